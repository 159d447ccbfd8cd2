/* sgb_load: the streaming modes of sgbench. bulk sends the pattern to a sink
 * upstream that checks it; bulk2 sends it to an echo upstream and checks what
 * comes back; pingpong bounces small messages and times each round trip. The
 * sessions are opened (and logged in) first; the clock starts when all are
 * ready. Connections are spread over --threads threads, each with its own
 * epoll loop. The paced ping-pong engine is shared with the storm mode. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sgb.h"
#include "sgb_load.h"

#define EPOLL_BATCH 64
/* How often a loop looks at the shared stop flag and the clock. */
#define POLL_SLICE_MS 5

/* --- bulk --- */

struct bconn {
	int fd;
	uint64_t start; /* pattern offset of this connection */
	uint64_t sent;  /* payload bytes sent */
	uint64_t recvd; /* echo: payload bytes received and checked */
	uint64_t limit; /* payload bytes to send */
	uint64_t sunk;  /* sink: bytes the upstream confirmed */
	uint64_t t_done;
	bool readable, writable;
	bool wdone, rdone, failed;
	size_t rlen;
	char reply[64];
};

struct bthread {
	const struct sgb_opts *o;
	bool echo;
	struct bconn *c;
	unsigned n;
	atomic_bool *stop;
	uint64_t t0;
	uint64_t t_abandon; /* connections not done by then have failed */
	uint64_t t_end;
	uint8_t *buf;
	char err[256];
	unsigned errors;
};

/* what and detail, joined, describe the failure. */
static void bconn_fail(struct bthread *t, struct bconn *c, const char *what, const char *detail)
{
	if (t->errors++ == 0)
		snprintf(t->err, sizeof(t->err), "%s%s", what, detail);
	c->failed = true;
	c->rdone = c->wdone = true;
	c->t_done = sgb_now_ns();
}

static void bconn_shut(struct bthread *t, struct bconn *c)
{
	if (c->wdone)
		return;
	c->wdone = true;
	if (shutdown(c->fd, SHUT_WR) < 0)
		bconn_fail(t, c, "shutdown: ", strerror(errno));
}

static void bconn_send(struct bthread *t, struct bconn *c)
{
	while (!c->wdone && c->writable) {
		size_t want;
		ssize_t n;

		if (c->sent >= c->limit || atomic_load_explicit(t->stop, memory_order_relaxed)) {
			bconn_shut(t, c);
			return;
		}
		want = t->o->chunk;
		if (c->limit - c->sent < want)
			want = (size_t)(c->limit - c->sent);
		n = send(c->fd, sgb_pattern_at(c->start + c->sent), want, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				c->writable = false;
				return;
			}
			bconn_fail(t, c, "send: ", strerror(errno));
			return;
		}
		c->sent += (uint64_t)n;
	}
}

/* The sink's verdict, "OK BYTES\n" or "BAD OFFSET\n", then EOF. */
static void bconn_sink_eof(struct bthread *t, struct bconn *c)
{
	char *end;

	c->reply[c->rlen] = '\0';
	if (strncmp(c->reply, "OK ", 3) != 0) {
		bconn_fail(t, c, "the sink upstream reported: ", c->reply);
		return;
	}
	c->sunk = strtoull(c->reply + 3, &end, 10);
	if (*end != '\n' || c->sunk != c->sent) {
		bconn_fail(t, c, "the sink upstream counted a different length: ", c->reply + 3);
		return;
	}
	c->rdone = true;
	c->t_done = sgb_now_ns();
}

static void bconn_recv(struct bthread *t, struct bconn *c)
{
	while (!c->rdone && c->readable) {
		ssize_t n;

		if (t->echo)
			n = recv(c->fd, t->buf, SGB_IO_LEN, 0);
		else
			n = recv(c->fd, c->reply + c->rlen, sizeof(c->reply) - 1 - c->rlen, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				c->readable = false;
				return;
			}
			bconn_fail(t, c, "recv: ", strerror(errno));
			return;
		}
		if (n == 0) {
			if (!t->echo) {
				bconn_sink_eof(t, c);
			} else if (!c->wdone || c->recvd != c->sent) {
				bconn_fail(t, c, "the echo ended early", "");
			} else {
				c->rdone = true;
				c->t_done = sgb_now_ns();
			}
			return;
		}
		if (!t->echo) {
			c->rlen += (size_t)n;
			if (c->rlen == sizeof(c->reply) - 1) {
				bconn_fail(t, c, "the sink upstream says too much", "");
				return;
			}
			continue;
		}
		if (c->recvd + (uint64_t)n > c->sent) {
			bconn_fail(t, c, "the echo returned more than was sent", "");
			return;
		}
		if (t->o->verify &&
		    sgb_pattern_check(c->start + c->recvd, t->buf, (size_t)n) != 0) {
			char at[32];

			snprintf(at, sizeof(at), "%" PRIu64,
				 c->recvd +
					 sgb_pattern_check(c->start + c->recvd, t->buf, (size_t)n) -
					 1);
			bconn_fail(t, c, "the echo differs at byte ", at);
			return;
		}
		c->recvd += (uint64_t)n;
	}
}

static void *bthread_run(void *arg)
{
	struct bthread *t = arg;
	struct epoll_event evs[EPOLL_BATCH];
	unsigned left = t->n;
	bool stop_seen = false;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0) {
		snprintf(t->err, sizeof(t->err), "epoll_create1: %s", strerror(errno));
		t->errors++;
		return NULL;
	}
	for (unsigned i = 0; i < t->n; i++) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					 .data.u32 = i};

		t->c[i].readable = t->c[i].writable = true;
		epoll_ctl(ep, EPOLL_CTL_ADD, t->c[i].fd, &ev);
	}
	while (left > 0) {
		int k;

		if (!stop_seen && atomic_load_explicit(t->stop, memory_order_relaxed)) {
			/* Time is up: no more bytes, and the upstream learns it. */
			stop_seen = true;
			for (unsigned i = 0; i < t->n; i++)
				bconn_shut(t, &t->c[i]);
		}
		if (sgb_now_ns() > t->t_abandon) {
			/* A relay that stalls (a naive one can deadlock when both
			 * directions fill up) must not hang the benchmark. */
			for (unsigned i = 0; i < t->n; i++) {
				if (!t->c[i].rdone)
					bconn_fail(t, &t->c[i], "timed out: the relay stalled", "");
			}
			break;
		}
		k = epoll_wait(ep, evs, EPOLL_BATCH, POLL_SLICE_MS);
		for (int e = 0; e < k; e++) {
			struct bconn *c = &t->c[evs[e].data.u32];

			if (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->readable = true;
			if (evs[e].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				c->writable = true;
		}
		/* Round-robin over every connection, so one never starves another. */
		left = 0;
		for (unsigned i = 0; i < t->n; i++) {
			struct bconn *c = &t->c[i];

			if (c->rdone)
				continue;
			bconn_send(t, c);
			bconn_recv(t, c);
			if (!c->rdone)
				left++;
		}
	}
	t->t_end = 0;
	for (unsigned i = 0; i < t->n; i++) {
		if (t->c[i].t_done > t->t_end)
			t->t_end = t->c[i].t_done;
	}
	close(ep);
	return NULL;
}

static void sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Sleeps until the deadline or until every thread is done. */
static void wait_until(uint64_t deadline, atomic_uint *running)
{
	while (atomic_load(running) > 0) {
		uint64_t now = sgb_now_ns();

		if (now >= deadline)
			return;
		sleep_s(deadline - now > 10000000u ? 0.01 : (double)(deadline - now) / 1e9);
	}
}

struct bthread_start {
	struct bthread *t;
	atomic_uint *running;
};

static void *bthread_main(void *arg)
{
	struct bthread_start *s = arg;

	bthread_run(s->t);
	atomic_fetch_sub(s->running, 1);
	return NULL;
}

static unsigned clamp_threads(unsigned threads, unsigned conns)
{
	if (threads == 0)
		threads = 1;
	return threads > conns ? conns : threads;
}

int sgb_mode_bulk(const struct sgb_opts *o, bool both_ways)
{
	unsigned nthreads = clamp_threads(o->threads, o->conns), errors = 0, opened;
	struct bconn *conns = calloc(o->conns, sizeof(*conns));
	struct bthread *th = calloc(nthreads, sizeof(*th));
	struct bthread_start *st = calloc(nthreads, sizeof(*st));
	pthread_t *tids = calloc(nthreads, sizeof(*tids));
	int *fds = calloc(o->conns, sizeof(*fds));
	atomic_bool stop = false;
	atomic_uint running = nthreads;
	uint64_t total = 0, sent = 0, t0, t_end = 0;
	long long cpu0 = 0, cpu1 = 0;
	char err[512] = "";
	struct sgb_json j;
	double secs, mbps;
	int rc = 1;

	if (conns == NULL || th == NULL || st == NULL || tids == NULL || fds == NULL) {
		fprintf(stderr, "sgbench: out of memory\n");
		goto out;
	}
	opened = sgb_open_sessions(o, o->conns, o->conns, o->timeout, fds, &errors, err,
				   sizeof(err));
	if (opened < o->conns) {
		fprintf(stderr, "sgbench: %s: opened %u of %u sessions: %s\n", o->mode, opened,
			o->conns, err);
		for (unsigned i = 0; i < opened; i++)
			close(fds[i]);
		goto out;
	}
	for (unsigned i = 0; i < o->conns; i++) {
		char hdr[SGB_HDR_MAX];
		int len;

		conns[i].fd = fds[i];
		conns[i].start = sgb_pattern_start(i);
		conns[i].limit = o->bytes > 0 ? o->bytes : UINT64_MAX;
		len = both_ways ? snprintf(hdr, sizeof(hdr), SGB_HDR_ECHO)
				: snprintf(hdr, sizeof(hdr), "SGB sink %" PRIu64 "\n",
					   conns[i].start);
		if (sgb_send_all(fds[i], hdr, (size_t)len, 5000) < 0) {
			fprintf(stderr, "sgbench: %s: sending the header failed\n", o->mode);
			for (unsigned k = 0; k < o->conns; k++)
				close(fds[k]);
			goto out;
		}
	}
	for (unsigned i = 0; i < nthreads; i++) {
		th[i].o = o;
		th[i].echo = both_ways;
		th[i].stop = &stop;
		th[i].buf = malloc(SGB_IO_LEN);
		/* Each thread gets a contiguous slice of the connections. */
		th[i].c = conns + i * (o->conns / nthreads) +
			  (i < o->conns % nthreads ? i : o->conns % nthreads);
		th[i].n = o->conns / nthreads + (i < o->conns % nthreads);
		st[i].t = &th[i];
		st[i].running = &running;
		if (th[i].buf == NULL) {
			fprintf(stderr, "sgbench: out of memory\n");
			exit(1);
		}
	}
	if (o->pid > 0)
		cpu0 = sgb_proc_cpu_ms(o->pid);
	t0 = sgb_now_ns();
	for (unsigned i = 0; i < nthreads; i++) {
		th[i].t0 = t0;
		/* --seconds: what is in flight drains in well under 20 s. */
		th[i].t_abandon = t0 + (uint64_t)((o->bytes > 0 || o->seconds + 20 > o->timeout
							   ? o->timeout
							   : o->seconds + 20) *
						  1e9);
		if (pthread_create(&tids[i], NULL, bthread_main, &st[i]) != 0) {
			fprintf(stderr, "sgbench: pthread_create failed\n");
			exit(1);
		}
	}
	if (o->bytes == 0)
		wait_until(t0 + (uint64_t)(o->seconds * 1e9), &running);
	else
		wait_until(t0 + (uint64_t)(o->timeout * 1e9), &running);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(tids[i], NULL);
	if (o->pid > 0)
		cpu1 = sgb_proc_cpu_ms(o->pid);
	for (unsigned i = 0; i < nthreads; i++) {
		if (th[i].errors > 0 && errors == 0)
			snprintf(err, sizeof(err), "%s", th[i].err);
		errors += th[i].errors;
		if (th[i].t_end > t_end)
			t_end = th[i].t_end;
		free(th[i].buf);
	}
	for (unsigned i = 0; i < o->conns; i++) {
		total += both_ways ? conns[i].recvd : conns[i].sunk;
		sent += conns[i].sent;
		close(conns[i].fd);
	}
	secs = t_end > t0 ? (double)(t_end - t0) / 1e9 : 0;
	mbps = secs > 0 ? (double)total / secs / 1e6 : 0;
	sgb_json_begin(&j, o);
	sgb_json_int(&j, "conns", o->conns);
	sgb_json_int(&j, "threads", nthreads);
	sgb_json_int(&j, "bytes", (long long)total);
	sgb_json_num(&j, "seconds", secs);
	sgb_json_num(&j, "MBps", mbps);
	sgb_json_num(&j, "Gbps", mbps * 8 / 1000);
	sgb_json_bool(&j, "verified", o->verify && errors == 0);
	if (o->pid > 0)
		sgb_json_int(&j, "daemon_cpu_ms", cpu1 - cpu0);
	sgb_json_int(&j, "errors", errors);
	if (errors > 0)
		sgb_json_str(&j, "error", err);
	sgb_json_bool(&j, "ok", errors == 0);
	sgb_json_end(&j);
	fprintf(stderr, "%s%s%s: %u conn(s), %.1f MB/s (%.2f Gbit/s), %.1f MB in %.2f s%s%s\n",
		o->label != NULL ? o->label : "", o->label != NULL ? " " : "", o->mode, o->conns,
		mbps, mbps * 8 / 1000, (double)total / 1e6, secs,
		o->verify ? ", every byte checked" : ", unchecked", errors > 0 ? ", ERRORS" : "");
	if (errors > 0)
		fprintf(stderr, "sgbench: %u error(s), first: %s\n", errors, err);
	rc = errors == 0 ? 0 : 1;
out:
	free(conns);
	free(th);
	free(st);
	free(tids);
	free(fds);
	return rc;
}

/* --- ping-pong --- */

struct pconn {
	int fd;
	uint64_t start, pos; /* pattern offset, and bytes exchanged so far */
	uint64_t t_sent;     /* when the message in flight left; 0: none in flight */
	uint64_t t_next;     /* paced: when the next message is due */
	size_t got;
};

static void pconn_fail(struct sgb_pp_thread *t, struct pconn *c, const char *what)
{
	if (t->errors++ == 0)
		snprintf(t->err, sizeof(t->err), "%s", what);
	epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
}

static void pconn_send(struct sgb_pp *p, struct sgb_pp_thread *t, struct pconn *c, uint64_t now)
{
	ssize_t n = send(c->fd, sgb_pattern_at(c->start + c->pos), p->size, MSG_NOSIGNAL);

	if (n != (ssize_t)p->size) {
		/* A small message into an idle connection's empty buffer goes
		 * whole; anything else is an error for this benchmark. */
		pconn_fail(t, c, n < 0 ? strerror(errno) : "short send");
		return;
	}
	c->t_sent = now;
	c->got = 0;
}

static void pconn_recv(struct sgb_pp *p, struct sgb_pp_thread *t, struct pconn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, t->buf + c->got, p->size - c->got, 0);
		uint64_t now;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			pconn_fail(t, c,
				   n == 0 ? "the echo closed the connection" : strerror(errno));
			return;
		}
		if (c->t_sent == 0) {
			pconn_fail(t, c, "bytes arrived that were never sent");
			return;
		}
		c->got += (size_t)n;
		if (c->got < p->size)
			continue;
		now = sgb_now_ns();
		if (p->verify && sgb_pattern_check(c->start + c->pos, t->buf, p->size) != 0) {
			pconn_fail(t, c, "the echo differs from the message");
			return;
		}
		c->pos += p->size;
		{
			unsigned ph = atomic_load_explicit(&p->phase, memory_order_relaxed);

			if (ph < SGB_PP_PHASES) {
				sgb_lat_add(&t->lat[ph], now - c->t_sent);
				t->count[ph]++;
			}
		}
		c->t_sent = 0;
		if (p->interval_ns == 0) {
			pconn_send(p, t, c, now);
			if (c->fd < 0)
				return;
		} else {
			c->t_next += p->interval_ns;
			if (c->t_next < now)
				c->t_next = now; /* late: no burst to catch up */
			return;
		}
	}
}

static void *pp_thread_main(void *arg)
{
	struct sgb_pp_thread *t = arg;
	struct sgb_pp *p = t->pp;
	struct epoll_event evs[EPOLL_BATCH];
	struct pconn *c = calloc(t->n, sizeof(*c));
	uint64_t now = sgb_now_ns();

	t->buf = malloc(p->size);
	t->ep = epoll_create1(EPOLL_CLOEXEC);
	if (c == NULL || t->buf == NULL || t->ep < 0) {
		snprintf(t->err, sizeof(t->err), "out of memory");
		t->errors++;
		goto out;
	}
	for (unsigned i = 0; i < t->n; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};

		c[i].fd = t->fds[i];
		c[i].start = sgb_pattern_start(t->first_id + i);
		/* Paced senders start spread over one interval. */
		c[i].t_next = now + (p->interval_ns * (i * 7 + 3) / (t->n * 7 + 7));
		epoll_ctl(t->ep, EPOLL_CTL_ADD, c[i].fd, &ev);
		if (p->interval_ns == 0)
			pconn_send(p, t, &c[i], now);
	}
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		struct timespec timeout = {.tv_sec = 0, .tv_nsec = POLL_SLICE_MS * 1000000L};
		int k;

		if (p->interval_ns > 0) {
			uint64_t next = UINT64_MAX;

			now = sgb_now_ns();
			for (unsigned i = 0; i < t->n; i++) {
				if (c[i].fd < 0 || c[i].t_sent != 0)
					continue;
				if (c[i].t_next <= now)
					pconn_send(p, t, &c[i], now);
				else if (c[i].t_next < next)
					next = c[i].t_next;
			}
			/* A paced send must leave on time: a nanosecond timeout,
			 * not epoll_wait's milliseconds. */
			if (next != UINT64_MAX && next - now < (uint64_t)timeout.tv_nsec)
				timeout.tv_nsec = (long)(next - now);
		}
		k = epoll_pwait2(t->ep, evs, EPOLL_BATCH, &timeout, NULL);
		for (int e = 0; e < k; e++) {
			struct pconn *pc = &c[evs[e].data.u32];

			if (pc->fd >= 0)
				pconn_recv(p, t, pc);
		}
	}
out:
	for (unsigned i = 0; c != NULL && i < t->n; i++) {
		if (c[i].fd >= 0)
			close(c[i].fd);
	}
	if (t->ep >= 0)
		close(t->ep);
	free(c);
	free(t->buf);
	return NULL;
}

int sgb_pp_start(struct sgb_pp *p, int *fds, unsigned n, unsigned nthreads)
{
	nthreads = clamp_threads(nthreads, n);
	p->nthreads = nthreads;
	p->th = calloc(nthreads, sizeof(*p->th));
	p->tids = calloc(nthreads, sizeof(*p->tids));
	if (p->th == NULL || p->tids == NULL)
		return -1;
	atomic_store(&p->stop, false);
	for (unsigned i = 0, first = 0; i < nthreads; i++) {
		struct sgb_pp_thread *t = &p->th[i];

		t->pp = p;
		t->n = n / nthreads + (i < n % nthreads);
		t->fds = fds + first;
		t->first_id = first;
		t->ep = -1;
		first += t->n;
		if (pthread_create(&p->tids[i], NULL, pp_thread_main, t) != 0)
			return -1;
	}
	return 0;
}

void sgb_pp_stop(struct sgb_pp *p)
{
	atomic_store(&p->stop, true);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->tids[i], NULL);
}

/* Merges the threads' samples of one phase into out. */
void sgb_pp_collect(struct sgb_pp *p, unsigned phase, struct sgb_lat *out, uint64_t *count,
		    unsigned *errors, char *err, size_t errlen)
{
	*count = 0;
	for (unsigned i = 0; i < p->nthreads; i++) {
		struct sgb_lat *l = &p->th[i].lat[phase];

		for (size_t k = 0; k < l->n; k++)
			sgb_lat_add(out, l->ns[k]);
		*count += p->th[i].count[phase];
		if (errors != NULL) {
			if (p->th[i].errors > 0 && *errors == 0)
				snprintf(err, errlen, "%s", p->th[i].err);
			*errors += p->th[i].errors;
		}
	}
}

void sgb_pp_free(struct sgb_pp *p)
{
	for (unsigned i = 0; i < p->nthreads; i++) {
		for (unsigned ph = 0; ph < SGB_PP_PHASES; ph++)
			sgb_lat_free(&p->th[i].lat[ph]);
	}
	free(p->th);
	free(p->tids);
	p->th = NULL;
	p->tids = NULL;
}

int sgb_pp_send_headers(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (sgb_send_all(fds[i], SGB_HDR_ECHO, strlen(SGB_HDR_ECHO), 5000) < 0)
			return -1;
	}
	return 0;
}

void sgb_sleep_s(double s)
{
	sleep_s(s);
}

int sgb_mode_pingpong(const struct sgb_opts *o)
{
	int *fds = calloc(o->conns, sizeof(*fds));
	struct sgb_pp p;
	struct sgb_lat lat = {0};
	unsigned errors = 0, opened;
	uint64_t count = 0, t0, t1;
	long long cpu0 = 0, cpu1 = 0;
	char err[512] = "";
	struct sgb_json j;
	double secs;

	memset(&p, 0, sizeof(p));
	if (fds == NULL)
		return 1;
	opened = sgb_open_sessions(o, o->conns, o->concurrency, o->timeout, fds, &errors, err,
				   sizeof(err));
	if (opened < o->conns || sgb_pp_send_headers(fds, opened) < 0) {
		fprintf(stderr, "sgbench: pingpong: opened %u of %u sessions: %s\n", opened,
			o->conns, err);
		for (unsigned i = 0; i < opened; i++)
			close(fds[i]);
		free(fds);
		return 1;
	}
	p.size = o->size;
	p.verify = o->verify;
	p.interval_ns = o->rate > 0 ? (uint64_t)(1e9 / o->rate) : 0;
	atomic_store(&p.phase, SGB_PP_PHASES); /* warm-up: not recorded */
	if (sgb_pp_start(&p, fds, o->conns, o->threads) < 0) {
		fprintf(stderr, "sgbench: cannot start threads\n");
		return 1;
	}
	sleep_s(o->warmup);
	if (o->pid > 0)
		cpu0 = sgb_proc_cpu_ms(o->pid);
	t0 = sgb_now_ns();
	atomic_store(&p.phase, 0);
	sleep_s(o->seconds);
	atomic_store(&p.phase, SGB_PP_PHASES);
	t1 = sgb_now_ns();
	if (o->pid > 0)
		cpu1 = sgb_proc_cpu_ms(o->pid);
	sgb_pp_stop(&p);
	errors = 0;
	sgb_pp_collect(&p, 0, &lat, &count, &errors, err, sizeof(err));
	secs = (double)(t1 - t0) / 1e9;
	sgb_json_begin(&j, o);
	sgb_json_int(&j, "conns", o->conns);
	sgb_json_int(&j, "size", o->size);
	sgb_json_num(&j, "seconds", secs);
	if (o->rate > 0)
		sgb_json_num(&j, "rate_per_conn", o->rate);
	sgb_json_num(&j, "rtt_per_s", (double)count / secs);
	sgb_lat_report(&lat, &j, "");
	if (o->pid > 0)
		sgb_json_int(&j, "daemon_cpu_ms", cpu1 - cpu0);
	sgb_json_int(&j, "errors", errors);
	if (errors > 0)
		sgb_json_str(&j, "error", err);
	sgb_json_bool(&j, "ok", errors == 0 && count > 0);
	sgb_json_end(&j);
	fprintf(stderr,
		"%s%spingpong: %u conn(s), %u B: %.0f round trips/s, p50 %.1f us, p99 %.1f us, "
		"p999 %.1f us%s\n",
		o->label != NULL ? o->label : "", o->label != NULL ? " " : "", o->conns, o->size,
		(double)count / secs, sgb_lat_pct_us(&lat, 0.5), sgb_lat_pct_us(&lat, 0.99),
		sgb_lat_pct_us(&lat, 0.999), errors > 0 ? ", ERRORS" : "");
	if (errors > 0)
		fprintf(stderr, "sgbench: %u error(s), first: %s\n", errors, err);
	sgb_lat_free(&lat);
	sgb_pp_free(&p);
	free(fds);
	return errors == 0 && count > 0 ? 0 : 1;
}
