/*
 * The dashboard's pages (the HTML files in deployer/web/), embedded in the binary at
 * build time by deployer/webassets.c (.incbin), NUL-terminated: a workshop
 * without network still gets every byte of its page from rainbow.
 */
#ifndef RAINBOW_WEBASSETS_H
#define RAINBOW_WEBASSETS_H

extern const char web_dashboard_html[];
extern const char web_chat_html[];

#endif
