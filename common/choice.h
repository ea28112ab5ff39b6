/*
 * Which word of a '|'-separated list a string is ("keep|shutdown|assist"):
 * the option tables of chatload and rainbow store an enum as that index.
 */
#ifndef COMMON_CHOICE_H
#define COMMON_CHOICE_H

/* v's index in list (0 for the first word), or -1 when v is none of them;
 * whole words only: "kee" is not "keep". */
int choice_index(const char *list, const char *v);

#endif
