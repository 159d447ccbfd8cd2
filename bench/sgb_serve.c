/* sgb_serve: the programs sgbench runs as servers. serve is the upstream
 * every contender relays to: epoll, one thread per listener (SO_REUSEPORT),
 * echo or a checking sink per connection, chosen by the connection's first
 * line, so that the upstream costs little and is never what is measured.
 * forkrelay is the naive fork-per-connection relay the daemon is compared
 * with: accept, fork, connect, then poll() and copy. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net.h"
#include "sgb.h"

#define SERVE_MAX_THREADS 16
#define SERVE_BACKLOG     4096
#define EPOLL_BATCH       128
/* Reads per event and connection, so one busy stream does not starve others. */
#define SERVE_READS_PER_EVENT 4

enum sconn_state {
	SCONN_HEADER,
	SCONN_ECHO,
	SCONN_SINK,
};

struct sconn {
	int fd;
	enum sconn_state st;
	bool eof;
	uint64_t pos;   /* sink: pattern position of the next byte */
	uint64_t count; /* sink: bytes received */
	uint64_t bad;   /* sink: 1 + offset of the first wrong byte, or 0 */
	char *pend;     /* echo: bytes the client has not taken yet */
	size_t pend_off, pend_len;
	size_t hlen;
	char hdr[SGB_HDR_MAX];
};

struct sthread {
	int lfd;
	int ep;
	uint8_t *buf;
	bool verify;
	bool closed; /* a connection was closed (the forked server's child stops) */
};

static void sconn_close(struct sthread *t, struct sconn *c)
{
	epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->pend);
	free(c);
	t->closed = true;
}

static void sconn_want(struct sthread *t, struct sconn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends what is pending. 1: all sent, 0: the client is full, -1: error. */
static int sconn_flush(struct sconn *c)
{
	while (c->pend_len > 0) {
		ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return -1;
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	free(c->pend);
	c->pend = NULL;
	c->pend_off = 0;
	return 1;
}

/* Echoes data; what the client cannot take now waits, and reading stops. */
static int sconn_echo(struct sthread *t, struct sconn *c, const uint8_t *data, size_t len)
{
	ssize_t n = 0;

	while (len > 0) {
		n = send(c->fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -1;
		if (n < 0)
			n = 0;
		break;
	}
	if ((size_t)n < len) {
		c->pend = malloc(len - (size_t)n);
		if (c->pend == NULL)
			return -1;
		memcpy(c->pend, data + n, len - (size_t)n);
		c->pend_off = 0;
		c->pend_len = len - (size_t)n;
		sconn_want(t, c, EPOLLOUT);
	}
	return 0;
}

static void sconn_sink(struct sthread *t, struct sconn *c, const uint8_t *data, size_t len)
{
	if (t->verify && c->bad == 0) {
		size_t off = sgb_pattern_check(c->pos, data, len);

		if (off != 0)
			c->bad = c->count + off;
	}
	c->pos += len;
	c->count += len;
}

static int sconn_header(struct sthread *t, struct sconn *c, const uint8_t *data, size_t len,
			size_t *used)
{
	const uint8_t *nl = memchr(data, '\n', len);
	size_t take = nl != NULL ? (size_t)(nl - data) + 1 : len;
	char *end;

	if (c->hlen + take > sizeof(c->hdr) - 1)
		return -1;
	memcpy(c->hdr + c->hlen, data, take);
	c->hlen += take;
	*used = take;
	if (nl == NULL)
		return 0;
	c->hdr[c->hlen] = '\0';
	if (strcmp(c->hdr, SGB_HDR_ECHO) == 0) {
		c->st = SCONN_ECHO;
	} else if (strncmp(c->hdr, "SGB sink ", 9) == 0) {
		c->pos = strtoull(c->hdr + 9, &end, 10);
		if (*end != '\n')
			return -1;
		c->st = SCONN_SINK;
	} else {
		return -1;
	}
	(void)t;
	return 0;
}

/* Bytes from the client, in any state. Returns 0 or -1 (close). */
static int sconn_data(struct sthread *t, struct sconn *c, const uint8_t *data, size_t len)
{
	while (len > 0) {
		size_t used;

		switch (c->st) {
		case SCONN_HEADER:
			if (sconn_header(t, c, data, len, &used) < 0)
				return -1;
			data += used;
			len -= used;
			break;
		case SCONN_ECHO:
			return sconn_echo(t, c, data, len);
		case SCONN_SINK:
			sconn_sink(t, c, data, len);
			return 0;
		}
	}
	return 0;
}

static void sconn_eof(struct sthread *t, struct sconn *c)
{
	char reply[64];
	int n;

	c->eof = true;
	if (c->st == SCONN_SINK) {
		n = c->bad != 0 ? snprintf(reply, sizeof(reply), "BAD %" PRIu64 "\n", c->bad - 1)
				: snprintf(reply, sizeof(reply), "OK %" PRIu64 "\n", c->count);
		(void)send(c->fd, reply, (size_t)n, MSG_NOSIGNAL);
	}
	if (c->pend_len > 0)
		return; /* closed once flushed */
	shutdown(c->fd, SHUT_WR);
	sconn_close(t, c);
}

static void sconn_event(struct sthread *t, struct sconn *c, uint32_t events)
{
	if (c->pend_len > 0) {
		int r = sconn_flush(c);

		if (r < 0)
			goto fail;
		if (r == 0)
			return;
		if (c->eof) {
			shutdown(c->fd, SHUT_WR);
			sconn_close(t, c);
			return;
		}
		sconn_want(t, c, EPOLLIN);
	}
	for (int i = 0; i < SERVE_READS_PER_EVENT && c->pend_len == 0; i++) {
		ssize_t n = recv(c->fd, t->buf, SGB_IO_LEN, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			goto fail;
		if (n == 0) {
			sconn_eof(t, c);
			return;
		}
		if (sconn_data(t, c, t->buf, (size_t)n) < 0)
			goto fail;
		if ((size_t)n < SGB_IO_LEN)
			return;
	}
	(void)events;
	return;
fail:
	sconn_close(t, c);
}

static void sthread_accept(struct sthread *t)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = {.events = EPOLLIN};
		struct sconn *c;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* Out of descriptors: the benchmark asked for too much. */
				fprintf(stderr, "sgbench: serve: accept: %s\n", strerror(errno));
				usleep(10000);
			}
			return;
		}
		(void)net_set_nodelay(fd);
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			return;
		}
		c->fd = fd;
		ev.data.ptr = c;
		if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
		}
	}
}

static void *sthread_main(void *arg)
{
	struct sthread *t = arg;
	struct epoll_event evs[EPOLL_BATCH];
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};

	epoll_ctl(t->ep, EPOLL_CTL_ADD, t->lfd, &lev);
	for (;;) {
		int k = epoll_wait(t->ep, evs, EPOLL_BATCH, -1);

		for (int e = 0; e < k; e++) {
			if (evs[e].data.ptr == NULL)
				sthread_accept(t);
			else
				sconn_event(t, evs[e].data.ptr, evs[e].events);
		}
	}
	return NULL;
}

static int listen_reuseport(struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)ss, len) < 0 || listen(fd, SERVE_BACKLOG) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void serve_reap(int sig)
{
	int e = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = e;
}

/* The child of the forked server: the same echo or sink, on one connection. */
static int serve_fork_child(struct sthread *t, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN}, evs[2];
	struct sconn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return 1;
	c->fd = fd;
	ev.data.ptr = c;
	if (net_set_nonblock(fd, 1) < 0 || epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return 1;
	while (!t->closed) {
		int k = epoll_wait(t->ep, evs, 2, -1);

		for (int e = 0; e < k && !t->closed; e++)
			sconn_event(t, evs[e].data.ptr, evs[e].events);
	}
	return 0;
}

/* --fork: the classic server, a process per connection (as sockgate-server
 * and many real services are): each round trip wakes a process of its own. */
static int serve_fork(struct sthread *t)
{
	signal(SIGCHLD, serve_reap);
	if (net_set_nonblock(t->lfd, 0) < 0)
		return 1;
	for (;;) {
		int fd = accept4(t->lfd, NULL, NULL, SOCK_CLOEXEC);
		pid_t pid;

		if (fd < 0) {
			/* A signal (a child's end) or a client gone before the
			 * accept is normal; anything else waits, so as not to spin. */
			if (errno != EINTR && errno != ECONNABORTED) {
				fprintf(stderr, "sgbench: serve: accept: %s\n", strerror(errno));
				usleep(10000);
			}
			continue;
		}
		(void)net_set_nodelay(fd);
		pid = fork();
		if (pid == 0) {
			close(t->lfd);
			close(t->ep);
			t->ep = epoll_create1(EPOLL_CLOEXEC);
			_exit(t->ep < 0 ? 1 : serve_fork_child(t, fd));
		}
		close(fd);
		if (pid < 0)
			usleep(10000);
	}
}

int sgb_mode_serve(const struct sgb_opts *o)
{
	static struct sthread th[SERVE_MAX_THREADS];
	struct sockaddr_storage ss;
	socklen_t len;
	pthread_t tid;
	unsigned n = o->threads == 0 ? 1 : o->threads;
	char name[NET_ADDRSTRLEN], err[256];

	if (o->fork)
		n = 1; /* the listener; the children serve */
	else if (n > SERVE_MAX_THREADS)
		n = SERVE_MAX_THREADS;
	if (o->listen_spec == NULL) {
		fprintf(stderr, "sgbench: serve needs --listen HOST:PORT\n");
		return 2;
	}
	if (sgb_parse_addr(o->listen_spec, 1, &ss, &len, err, sizeof(err)) < 0) {
		fprintf(stderr, "sgbench: --listen: %s\n", err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (unsigned i = 0; i < n; i++) {
		th[i].lfd = listen_reuseport(&ss, len);
		if (th[i].lfd < 0) {
			fprintf(stderr, "sgbench: serve: listen on %s: %s\n", o->listen_spec,
				strerror(errno));
			return 1;
		}
		if (i == 0) {
			/* Port 0: the others share the port the kernel picked. */
			socklen_t bl = len;

			getsockname(th[0].lfd, (struct sockaddr *)&ss, &bl);
		}
		th[i].ep = epoll_create1(EPOLL_CLOEXEC);
		th[i].buf = malloc(SGB_IO_LEN);
		th[i].verify = o->verify;
		if (th[i].ep < 0 || th[i].buf == NULL)
			return 1;
	}
	net_format_local(th[0].lfd, name, sizeof(name));
	if (o->fork) {
		fprintf(stderr, "sgbench: serve: a process per connection, listening on %s\n",
			name);
		return serve_fork(&th[0]);
	}
	fprintf(stderr, "sgbench: serve: %u thread(s), listening on %s\n", n, name);
	for (unsigned i = 1; i < n; i++) {
		if (pthread_create(&tid, NULL, sthread_main, &th[i]) != 0)
			return 1;
	}
	sthread_main(&th[0]);
	return 0;
}

/* --- forkrelay --- */

#define FORK_BUF_LEN (64 * 1024)

/* One direction of the child's copy: what was read from fds[from] and not
 * yet written to fds[1 - from]. */
struct fork_dir {
	char buf[FORK_BUF_LEN];
	size_t off, len;
	bool eof;
};

/* Copies both ways until both sides are done. Runs in the child. Each
 * direction has its own buffer and the sockets are non-blocking, so a full
 * destination never stops the other direction (a relay that blocks in
 * write() deadlocks when both ways fill up). */
static int forkrelay_child(int cfd, const struct sockaddr_storage *up, socklen_t uplen)
{
	static struct fork_dir dir[2];
	struct errbuf eb;
	int ufd = net_connect((const struct sockaddr *)up, uplen, 0, &eb);
	int fds[2] = {cfd, ufd};

	if (ufd < 0 || net_set_nonblock(cfd, 1) < 0 || net_set_nonblock(ufd, 1) < 0)
		return 1;
	(void)net_set_nodelay(ufd);
	while (!(dir[0].eof && dir[0].len == 0 && dir[1].eof && dir[1].len == 0)) {
		struct pollfd pfd[2] = {{.fd = cfd}, {.fd = ufd}};

		for (int d = 0; d < 2; d++) {
			if (dir[d].len > 0)
				pfd[1 - d].events |= POLLOUT;
			else if (!dir[d].eof)
				pfd[d].events |= POLLIN;
		}
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int d = 0; d < 2; d++) {
			struct fork_dir *x = &dir[d];
			ssize_t n;

			if (x->len == 0 && !x->eof && pfd[d].revents != 0) {
				n = read(fds[d], x->buf, sizeof(x->buf));
				if (n < 0 && errno != EAGAIN && errno != EINTR)
					return 1;
				if (n == 0) {
					x->eof = true;
					shutdown(fds[1 - d], SHUT_WR);
				}
				if (n > 0) {
					x->off = 0;
					x->len = (size_t)n;
				}
			}
			if (x->len > 0) {
				n = write(fds[1 - d], x->buf + x->off, x->len);
				if (n < 0 && errno != EAGAIN && errno != EINTR)
					return 1;
				if (n > 0) {
					x->off += (size_t)n;
					x->len -= (size_t)n;
				}
			}
		}
	}
	return 0;
}

static void forkrelay_reap(int sig)
{
	int e = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = e;
}

int sgb_mode_forkrelay(const struct sgb_opts *o)
{
	struct sockaddr_storage ls, us;
	socklen_t llen, ulen;
	struct errbuf eb;
	char name[NET_ADDRSTRLEN], err[256];
	int lfd;

	if (o->listen_spec == NULL || o->upstream_spec == NULL) {
		fprintf(stderr, "sgbench: forkrelay needs --listen and --upstream\n");
		return 2;
	}
	if (sgb_parse_addr(o->listen_spec, 1, &ls, &llen, err, sizeof(err)) < 0 ||
	    sgb_parse_addr(o->upstream_spec, 0, &us, &ulen, err, sizeof(err)) < 0) {
		fprintf(stderr, "sgbench: forkrelay: %s\n", err);
		return 2;
	}
	lfd = net_listen((struct sockaddr *)&ls, llen, SERVE_BACKLOG, &eb);
	if (lfd < 0 || net_set_nonblock(lfd, 0) < 0) {
		fprintf(stderr, "sgbench: forkrelay: %s\n", eb.msg);
		return 1;
	}
	/* Reaped by a handler rather than SIG_IGN, so that their CPU time is
	 * added to ours (the benchmark reports it). */
	signal(SIGCHLD, forkrelay_reap);
	signal(SIGPIPE, SIG_IGN);
	net_format_local(lfd, name, sizeof(name));
	fprintf(stderr, "sgbench: forkrelay: listening on %s, relaying to %s\n", name,
		o->upstream_spec);
	for (;;) {
		int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		pid_t pid;

		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				usleep(10000);
			continue;
		}
		pid = fork();
		if (pid == 0) {
			close(lfd);
			(void)net_set_nodelay(cfd);
			_exit(forkrelay_child(cfd, &us, ulen));
		}
		close(cfd);
		if (pid < 0)
			usleep(10000);
	}
}
