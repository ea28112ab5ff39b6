/*
 * login_floor: what a login costs a server that does nothing but the
 * system calls, the reference for chatd's CPU per login in
 * bench/chatd_idle.py.
 *
 * It listens on 127.0.0.1:--port and answers bench/chatd_idle_clients.c's
 * plaintext login (stream header, SASL PLAIN, restart, bind, session,
 * initial presence) with canned replies, one per read, over the same kind
 * of event loop as chatd (epoll, non-blocking sockets, TCP_NODELAY,
 * getpeername at accept). There is no parsing and no state but the step a
 * connection is at, so its CPU time per login is close to the kernel's own
 * share of one: accept, six reads and six writes over loopback TCP.
 *
 * Not a server: it trusts that every read holds exactly one client
 * request, which is what that client sends. Runs until killed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LF_MAX_FD 65536
#define LF_HEADER                                                                \
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "             \
	"xmlns:stream='http://etherx.jabber.org/streams' id='0123456789abcdef' " \
	"from='example.test' version='1.0' xml:lang='en'>"

static const char *const lf_replies[] = {
	LF_HEADER "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
		  "<mechanism>PLAIN</mechanism></mechanisms></stream:features>",
	"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
	LF_HEADER "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
		  "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
		  "</stream:features>",
	("<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
	 "<jid>floor@example.test/floor</jid></bind></iq>"),
	"<iq type='result' id='s1' to='floor@example.test/floor'/>",
	"<presence from='floor@example.test/floor' to='floor@example.test/floor'/>",
};
#define LF_STEPS (sizeof(lf_replies) / sizeof(lf_replies[0]))

static unsigned char lf_step[LF_MAX_FD];

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN }, evs[256];
	int one = 1, l, ep;
	long port = argc == 3 && strcmp(argv[1], "--port") == 0 ? strtol(argv[2], NULL, 10) : 0;
	char buf[65536];

	if (port <= 0 || port > 65535) {
		fprintf(stderr, "usage: login_floor --port N\n");
		return 2;
	}
	a.sin_port = htons((unsigned short)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (l < 0 || ep < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 4096) < 0) {
		perror("login_floor");
		return 1;
	}
	ev.data.fd = l;
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1), i;

		if (n < 0 && errno != EINTR) {
			perror("login_floor: epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			int fd = evs[i].data.fd, c;
			struct sockaddr_in peer;
			socklen_t plen;
			ssize_t r;

			if (fd == l) {
				while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
				       0) {
					if (c >= LF_MAX_FD) {
						close(c);
						continue;
					}
					plen = sizeof(peer);
					getpeername(c, (struct sockaddr *)&peer, &plen);
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
					lf_step[c] = 0;
				}
				continue;
			}
			r = read(fd, buf, sizeof(buf));
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				close(fd);
				continue;
			}
			if (r > 0 && lf_step[fd] < LF_STEPS) {
				const char *out = lf_replies[lf_step[fd]++];

				if (write(fd, out, strlen(out)) < 0 && errno != EAGAIN)
					close(fd);
			}
		}
	}
}
