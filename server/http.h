/*
 * The HTTP endpoint on its own port, served by libmicrohttpd: GET /metrics
 * (Prometheus text), /healthz (200 while the loop runs), /readyz (200 while
 * accepting, 503 starting or draining).
 *
 * libmicrohttpd runs inside chatd's libuv loop (MHD_USE_EPOLL without an
 * internal thread; its epoll descriptor is watched with a uv_poll_t and its
 * timeouts with a uv_timer_t). Why not a thread: the metrics are then read
 * on the thread that writes them, with no atomics or locks, and /healthz
 * answering proves that the loop itself is alive, which is what a liveness
 * probe should check. A scrape costs the loop a few microseconds.
 */
#ifndef CHATD_HTTP_H
#define CHATD_HTTP_H

struct srv;
struct http;

/* Listens on addr ("ADDR:PORT"); NULL after logging why. */
struct http *http_start(struct srv *srv, const char *addr);
/* Stops serving and closes the handles; the struct is freed in their close
 * callbacks (run the loop afterwards). NULL is fine. */
void http_stop(struct http *h);

#endif
