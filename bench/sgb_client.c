/* sgb_client: client connections of sgbench, from a non-blocking connect()
 * through the login exchange (prompt, line, prompt, line, success message),
 * and opening many of them at once (see sgb.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "net.h"
#include "sgb.h"

int sgb_link_start(struct sgb_link *l, const struct sgb_opts *o, char *err, size_t errlen)
{
	struct errbuf eb;

	memset(l, 0, sizeof(*l));
	l->t_start = sgb_now_ns();
	l->fd = net_connect((const struct sockaddr *)&o->target, o->target_len, 1, &eb);
	if (l->fd < 0) {
		snprintf(err, errlen, "%s", eb.msg);
		return -1;
	}
	(void)net_set_nodelay(l->fd);
	l->st = SGB_LINK_CONNECTING;
	return 0;
}

uint32_t sgb_link_events(const struct sgb_link *l)
{
	return l->st == SGB_LINK_CONNECTING ? EPOLLOUT : EPOLLIN;
}

/* What the server said last, printable, for an error message. */
static void link_tail(const struct sgb_link *l, char *out, size_t cap)
{
	size_t start = l->len > 60 ? l->len - 60 : 0, o = 0;

	for (size_t i = start; i < l->len && o + 5 < cap; i++) {
		unsigned char c = (unsigned char)l->buf[i];

		if (c >= ' ' && c < 0x7f)
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
	}
	out[o] = '\0';
}

static int link_fail(const struct sgb_link *l, const char *what, char *err, size_t errlen)
{
	char tail[256];

	link_tail(l, tail, sizeof(tail));
	snprintf(err, errlen, "%s (%s; received \"%s\")", what,
		 l->st == SGB_LINK_USERNAME   ? "waiting for the username prompt"
		 : l->st == SGB_LINK_PASSWORD ? "waiting for the password prompt"
					      : "waiting for the success message",
		 tail);
	return -1;
}

static int link_send_line(struct sgb_link *l, const char *text)
{
	char line[600];
	int n = snprintf(line, sizeof(line), "%s\n", text);

	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	/* A fresh socket's send buffer always takes a short line whole. */
	return send(l->fd, line, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

int sgb_link_step(struct sgb_link *l, const struct sgb_login *lg, char *err, size_t errlen)
{
	for (;;) {
		const char *want;
		char *hit;
		ssize_t n;

		switch (l->st) {
		case SGB_LINK_CONNECTING:
			if (net_connect_result(l->fd) < 0) {
				snprintf(err, errlen, "connect: %s", strerror(errno));
				return -1;
			}
			l->st = lg->enabled ? SGB_LINK_USERNAME : SGB_LINK_READY;
			continue;
		case SGB_LINK_READY:
			return 1;
		case SGB_LINK_USERNAME:
			want = lg->user_prompt;
			break;
		case SGB_LINK_PASSWORD:
			want = lg->pass_prompt;
			break;
		case SGB_LINK_WELCOME:
		default:
			want = lg->success;
			break;
		}
		hit = memmem(l->buf, l->len, want, strlen(want));
		if (hit == NULL && l->st == SGB_LINK_WELCOME &&
		    memmem(l->buf, l->len, lg->user_prompt, strlen(lg->user_prompt)) != NULL) {
			/* Asked for a username again: the password was refused. */
			l->refused = true;
			return link_fail(l, "login refused", err, errlen);
		}
		if (hit != NULL) {
			size_t used = (size_t)(hit - l->buf) + strlen(want);

			memmove(l->buf, l->buf + used, l->len - used);
			l->len -= used;
			if (l->st == SGB_LINK_USERNAME) {
				if (link_send_line(l, lg->user) < 0)
					return link_fail(l, "sending the username failed", err,
							 errlen);
				l->st = SGB_LINK_PASSWORD;
			} else if (l->st == SGB_LINK_PASSWORD) {
				if (link_send_line(l, lg->pass) < 0)
					return link_fail(l, "sending the password failed", err,
							 errlen);
				l->st = SGB_LINK_WELCOME;
			} else {
				l->st = SGB_LINK_READY;
			}
			continue;
		}
		if (l->len == sizeof(l->buf)) {
			/* Keep the tail: a prompt may straddle what is dropped. */
			memmove(l->buf, l->buf + sizeof(l->buf) / 2, sizeof(l->buf) / 2);
			l->len = sizeof(l->buf) / 2;
		}
		n = recv(l->fd, l->buf + l->len, sizeof(l->buf) - l->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0) {
			char what[128];

			snprintf(what, sizeof(what), "recv: %s", strerror(errno));
			return link_fail(l, what, err, errlen);
		}
		if (n == 0)
			return link_fail(l, "connection closed by the server", err, errlen);
		l->len += (size_t)n;
	}
}

int sgb_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	const char *p = buf;
	uint64_t deadline = sgb_now_ns() + (uint64_t)timeout_ms * 1000000u;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			uint64_t now = sgb_now_ns();

			if (now >= deadline)
				return -1;
			(void)poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
			continue;
		}
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

unsigned sgb_open_sessions(const struct sgb_opts *o, unsigned n, unsigned concurrency,
			   double timeout_s, int *fds, unsigned *errors, char *err, size_t errlen)
{
	struct sgb_link *links;
	struct epoll_event evs[256];
	uint64_t deadline = sgb_now_ns() + (uint64_t)(timeout_s * 1e9);
	unsigned started = 0, ready = 0, active = 0, attempts = 0;
	/* Failures are retried, up to as many again as wanted, so one reset does
	 * not spoil a run; a server that refuses everything still ends it. */
	unsigned max_attempts = 2 * n + 16;
	char why[512];
	int ep;

	*errors = 0;
	if (concurrency == 0)
		concurrency = 1;
	if (concurrency > n)
		concurrency = n;
	links = calloc(concurrency, sizeof(*links));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (links == NULL || ep < 0) {
		snprintf(err, errlen, "out of memory or descriptors");
		free(links);
		if (ep >= 0)
			close(ep);
		return 0;
	}
	for (unsigned i = 0; i < concurrency; i++)
		links[i].fd = -1;
	while (ready < n) {
		/* Fill the free slots. */
		for (unsigned i = 0; i < concurrency && started < n && attempts < max_attempts;
		     i++) {
			struct epoll_event ev;

			if (links[i].fd >= 0)
				continue;
			attempts++;
			if (sgb_link_start(&links[i], o, why, sizeof(why)) < 0) {
				if (*errors == 0)
					snprintf(err, errlen, "%s", why);
				(*errors)++;
				links[i].fd = -1;
				if (errno == EMFILE || errno == ENFILE)
					break;
				continue;
			}
			ev.events = sgb_link_events(&links[i]);
			ev.data.u32 = i;
			if (epoll_ctl(ep, EPOLL_CTL_ADD, links[i].fd, &ev) < 0) {
				close(links[i].fd);
				links[i].fd = -1;
				(*errors)++;
				continue;
			}
			started++;
			active++;
		}
		if (active == 0)
			break;
		uint64_t now = sgb_now_ns();
		if (now >= deadline) {
			if (*errors == 0)
				snprintf(err, errlen, "timed out with %u of %u sessions open",
					 ready, n);
			(*errors)++;
			break;
		}
		int k = epoll_wait(ep, evs, 256, (int)((deadline - now) / 1000000u) + 1);

		if (k < 0 && errno != EINTR)
			break;
		for (int e = 0; e < k; e++) {
			struct sgb_link *l = &links[evs[e].data.u32];
			enum sgb_link_state before = l->st;
			int r;

			if (l->fd < 0)
				continue;
			r = sgb_link_step(l, &o->login, why, sizeof(why));
			if (r == 0 && before == SGB_LINK_CONNECTING) {
				struct epoll_event ev = {.events = sgb_link_events(l),
							 .data.u32 = evs[e].data.u32};

				epoll_ctl(ep, EPOLL_CTL_MOD, l->fd, &ev);
			}
			if (r == 0)
				continue;
			epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, NULL);
			active--;
			if (r > 0 && l->len == 0) {
				fds[ready++] = l->fd;
			} else if (r < 0 && l->refused) {
				/* Retrying a refused login only earns a penalty. */
				snprintf(err, errlen, "%s", why);
				(*errors)++;
				close(l->fd);
				l->fd = -1;
				max_attempts = 0;
				n = ready;
				break;
			} else {
				if (*errors == 0)
					snprintf(err, errlen, "%s",
						 r > 0 ? "unexpected bytes after the login" : why);
				(*errors)++;
				close(l->fd);
				started--;
			}
			l->fd = -1;
		}
	}
	for (unsigned i = 0; i < concurrency; i++) {
		if (links[i].fd >= 0)
			close(links[i].fd);
	}
	free(links);
	close(ep);
	return ready;
}
