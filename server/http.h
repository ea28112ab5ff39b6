/*
 * The HTTP endpoint on its own port, served by libmicrohttpd: GET /metrics
 * (Prometheus text), /healthz (200 while the loop runs), /readyz (200 while
 * accepting, 503 starting or draining).
 *
 * Threads: libmicrohttpd owns its sockets on its own internal thread (epoll),
 * so accepting, parsing, timeouts and connection limits never depend on the
 * libuv loop re-arming anything: nothing can leave it stuck. The answer
 * itself is computed on the loop thread: the MHD thread suspends the request,
 * queues it under a mutex and wakes the loop (uv_async_t); the loop formats
 * the answer from its own state (metrics, phase, cluster readiness) and
 * resumes the request; MHD sends it. So the loop state is only ever read on
 * the loop thread, with no locks on it, every answer is exact, and /healthz
 * answering still proves that the loop itself is alive, which is what a
 * liveness probe should check. See docs/chatd.md "HTTP endpoint".
 */
#ifndef CHATD_HTTP_H
#define CHATD_HTTP_H

struct srv;
struct http;

/* Listens on addr ("ADDR:PORT") with the limits of srv->cfg; NULL after
 * logging why. */
struct http *http_start(struct srv *srv, const char *addr);
/* Answers what is pending, stops libmicrohttpd (joining its thread) and
 * closes the loop handle; the struct is freed in its close callback (run
 * the loop afterwards). NULL is fine. */
void http_stop(struct http *h);
/* The port it listens on (the kernel's pick when 0 was asked), or
 * -ENOTCONN. */
int http_bound_port(const struct http *h);

#endif
