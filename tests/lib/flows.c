/* flows: many clients' traffic at once (see flows.h). */
#include "flows.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOW_CHUNK (64 * 1024)

long long flows_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int flows_ms_until(long long deadline)
{
	long long left = deadline - flows_now_ms();

	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

uint64_t flows_rng_next(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ULL;
	return mix64(*state);
}

void flows_pattern(uint64_t seed, uint64_t off, unsigned char *buf, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint64_t w = mix64(seed ^ mix64((off + i) / 8));

		for (unsigned k = (unsigned)((off + i) % 8); k < 8 && i < len; k++, i++)
			buf[i] = (unsigned char)(w >> (8 * k));
	}
}

void flows_reset_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

void flow_init(struct flow *f, int fd, const unsigned char *out, size_t out_len, unsigned char *in,
	       size_t in_cap)
{
	memset(f, 0, sizeof(*f));
	f->fd = fd;
	f->out = out;
	f->out_len = out_len;
	f->allow = FLOW_NEVER;
	f->in = in;
	f->in_cap = in_cap;
	f->reset_at = FLOW_NEVER;
}

static void flow_end(struct flow *f, int error)
{
	close(f->fd);
	f->fd = -1;
	f->ended = true;
	f->error = error;
}

/* An echo flow that sent all it may for now and got all of it back. */
static bool flow_paused(const struct flow *f)
{
	return f->allow < f->out_len && f->sent >= f->allow && f->got >= f->sent;
}

static void flow_send(struct flow *f)
{
	size_t limit = f->allow < f->out_len ? f->allow : f->out_len;
	size_t chunk = limit - f->sent;
	ssize_t k;

	if (chunk > FLOW_CHUNK)
		chunk = FLOW_CHUNK;
	if (f->reset_at != FLOW_NEVER && f->reset_at - f->sent - f->got < chunk)
		chunk = f->reset_at - f->sent - f->got;
	k = send(f->fd, f->out + f->sent, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (k > 0)
		f->sent += (size_t)k;
	else if (k < 0 && errno != EAGAIN && errno != EINTR)
		flow_end(f, errno);
}

static void flow_recv(struct flow *f)
{
	ssize_t k;
	char extra;

	if (f->got == f->in_cap) {
		k = recv(f->fd, &extra, 1, MSG_DONTWAIT);
		if (k > 0) {
			flow_end(f, EOVERFLOW);
			return;
		}
	} else {
		k = recv(f->fd, f->in + f->got, f->in_cap - f->got, MSG_DONTWAIT);
	}
	if (k > 0)
		f->got += (size_t)k;
	else if (k == 0)
		flow_end(f, 0);
	else if (errno != EAGAIN && errno != EINTR)
		flow_end(f, errno);
}

int flows_pump(struct flow *fl, size_t n, const struct pacer *pc, int timeout_ms)
{
	struct pollfd *p = calloc(n + 1, sizeof(*p));
	size_t *at = calloc(n + 1, sizeof(*at));
	long long start = flows_now_ms(), deadline = start + timeout_ms;
	int ticks = 0, rc = -1;

	while (p != NULL && at != NULL) {
		long long now = flows_now_ms(), next = LLONG_MAX;
		size_t np = 0;
		int wait;

		if (pc != NULL && ticks < pc->count) {
			next = start + (long long)(ticks + 1) * pc->period_ms;
			if (now >= next) {
				pc->fn(pc->arg, ticks++);
				continue;
			}
		}
		for (size_t i = 0; i < n; i++) {
			struct flow *f = &fl[i];

			if (f->ended || flow_paused(f))
				continue;
			if (f->reset_at != FLOW_NEVER && f->sent + f->got >= f->reset_at) {
				flows_reset_close(f->fd);
				f->fd = -1;
				f->ended = f->reset = true;
				continue;
			}
			if (!f->shut && f->sent == f->out_len) {
				if (shutdown(f->fd, SHUT_WR) < 0) {
					flow_end(f, errno);
					continue;
				}
				f->shut = true;
			}
			p[np].fd = f->fd;
			p[np].events = POLLIN;
			if (f->sent < f->out_len && f->sent < f->allow)
				p[np].events |= POLLOUT;
			p[np].revents = 0;
			at[np++] = i;
		}
		if (np == 0 && next == LLONG_MAX) {
			rc = 0;
			break;
		}
		if (now >= deadline)
			break;
		wait = flows_ms_until(next < deadline ? next : deadline);
		if (poll(p, np, wait) < 0 && errno != EINTR)
			break;
		for (size_t k = 0; k < np; k++) {
			struct flow *f = &fl[at[k]];

			if (p[k].revents & POLLOUT)
				flow_send(f);
			if (!f->ended && (p[k].revents & (POLLIN | POLLHUP | POLLERR)))
				flow_recv(f);
		}
	}
	free(p);
	free(at);
	return rc;
}

long flows_first_bad_echo(const struct flow *fl, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct flow *f = &fl[i];

		if (f->reset)
			continue;
		if (!f->ended || f->error != 0 || f->got != f->out_len ||
		    memcmp(f->in, f->out, f->out_len) != 0)
			return (long)i;
	}
	return -1;
}
