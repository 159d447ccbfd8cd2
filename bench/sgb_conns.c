/* sgb_conns: the modes about connections rather than bytes. connrate opens
 * connections in a loop (connect, the login if asked, one small round trip,
 * close), logins counts complete logins, idle holds many sessions while it
 * samples the daemon's memory, and storm measures relayed sessions' latency
 * with and without a login storm beside them. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sgb.h"
#include "sgb_load.h"

#define EPOLL_BATCH 128

/* --- the connection loop, shared by connrate, logins and storm --- */

struct cr_slot {
	struct sgb_link link;
	bool echoing; /* header and payload sent, waiting for the payload back */
	size_t got;
	unsigned id;
};

struct cr_thread {
	struct cr *cr;
	unsigned nslots;
	unsigned first_id;
	uint64_t done, errors; /* in the measured window */
	uint64_t errors_all;
	struct sgb_lat lat; /* connect to close, in the measured window */
	char err[512];
};

struct cr {
	const struct sgb_opts *o;
	struct sgb_login login;
	bool logins_only;
	atomic_bool stop;
	atomic_bool measuring;
	unsigned nthreads;
	struct cr_thread *th;
	pthread_t *tids;
};

static void cr_error(struct cr_thread *t, const char *why)
{
	t->errors_all++;
	if (atomic_load_explicit(&t->cr->measuring, memory_order_relaxed))
		t->errors++;
	if (t->err[0] == '\0')
		snprintf(t->err, sizeof(t->err), "%s", why);
}

static void cr_slot_close(int ep, struct cr_slot *s)
{
	if (s->link.fd >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, s->link.fd, NULL);
		close(s->link.fd);
	}
	s->link.fd = -1;
}

static int cr_slot_begin(struct cr_thread *t, int ep, struct cr_slot *s)
{
	struct sgb_opts o = *t->cr->o;
	struct epoll_event ev;
	char why[512];

	o.login = t->cr->login;
	s->echoing = false;
	s->got = 0;
	if (sgb_link_start(&s->link, &o, why, sizeof(why)) < 0) {
		cr_error(t, why);
		s->link.fd = -1;
		return -1;
	}
	ev.events = sgb_link_events(&s->link);
	ev.data.ptr = s;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, s->link.fd, &ev) < 0) {
		cr_error(t, "epoll_ctl failed");
		close(s->link.fd);
		s->link.fd = -1;
		return -1;
	}
	return 0;
}

static void cr_slot_done(struct cr_thread *t, int ep, struct cr_slot *s)
{
	uint64_t now = sgb_now_ns();

	if (atomic_load_explicit(&t->cr->measuring, memory_order_relaxed)) {
		t->done++;
		sgb_lat_add(&t->lat, now - s->link.t_start);
	}
	cr_slot_close(ep, s);
}

/* One event on a slot. Returns when the slot waits again or is closed. */
static void cr_slot_event(struct cr_thread *t, int ep, struct cr_slot *s)
{
	const struct sgb_opts *o = t->cr->o;
	uint8_t buf[4096];
	char why[512];

	if (!s->echoing) {
		enum sgb_link_state before = s->link.st;
		int r = sgb_link_step(&s->link, &t->cr->login, why, sizeof(why));

		if (r < 0) {
			cr_error(t, why);
			cr_slot_close(ep, s);
			/* Wrong credentials: hammering on would only earn penalties. */
			if (s->link.refused)
				atomic_store(&t->cr->stop, true);
			return;
		}
		if (r == 0) {
			if (before == SGB_LINK_CONNECTING) {
				struct epoll_event ev = {.events = sgb_link_events(&s->link),
							 .data.ptr = s};

				epoll_ctl(ep, EPOLL_CTL_MOD, s->link.fd, &ev);
			}
			return;
		}
		if (s->link.len > 0) {
			cr_error(t, "unexpected bytes after the login");
			cr_slot_close(ep, s);
			return;
		}
		if (t->cr->logins_only) {
			cr_slot_done(t, ep, s);
			return;
		}
		/* The header and the payload in one segment: one round trip. */
		size_t hl = strlen(SGB_HDR_ECHO);

		memcpy(buf, SGB_HDR_ECHO, hl);
		memcpy(buf + hl, sgb_pattern_at(sgb_pattern_start(s->id)), o->size);
		if (send(s->link.fd, buf, hl + o->size, MSG_NOSIGNAL) != (ssize_t)(hl + o->size)) {
			cr_error(t, "sending the payload failed");
			cr_slot_close(ep, s);
			return;
		}
		s->echoing = true;
		if (before == SGB_LINK_CONNECTING) {
			/* Still registered for the connect's EPOLLOUT. */
			struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};

			epoll_ctl(ep, EPOLL_CTL_MOD, s->link.fd, &ev);
		}
		return;
	}
	for (;;) {
		ssize_t n = recv(s->link.fd, buf + s->got, o->size - s->got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			cr_error(t, n == 0 ? "closed before the echo" : strerror(errno));
			cr_slot_close(ep, s);
			return;
		}
		s->got += (size_t)n;
		if (s->got < o->size)
			continue;
		if (o->verify && sgb_pattern_check(sgb_pattern_start(s->id), buf, o->size) != 0) {
			cr_error(t, "the echo differs from the payload");
			cr_slot_close(ep, s);
			return;
		}
		cr_slot_done(t, ep, s);
		return;
	}
}

static void *cr_thread_main(void *arg)
{
	struct cr_thread *t = arg;
	struct cr_slot *slots = calloc(t->nslots, sizeof(*slots));
	struct epoll_event evs[EPOLL_BATCH];
	unsigned next_id = t->first_id;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (slots == NULL || ep < 0) {
		cr_error(t, "out of memory or descriptors");
		free(slots);
		return NULL;
	}
	for (unsigned i = 0; i < t->nslots; i++)
		slots[i].link.fd = -1;
	while (!atomic_load_explicit(&t->cr->stop, memory_order_relaxed)) {
		int k;

		for (unsigned i = 0; i < t->nslots; i++) {
			if (slots[i].link.fd >= 0)
				continue;
			slots[i].id = next_id;
			next_id += t->cr->nthreads; /* ids stay distinct across threads */
			if (cr_slot_begin(t, ep, &slots[i]) < 0 &&
			    (errno == EMFILE || errno == ENFILE))
				break;
		}
		k = epoll_wait(ep, evs, EPOLL_BATCH, 5);
		for (int e = 0; e < k; e++) {
			struct cr_slot *s = evs[e].data.ptr;

			if (s->link.fd >= 0)
				cr_slot_event(t, ep, s);
		}
	}
	for (unsigned i = 0; i < t->nslots; i++)
		cr_slot_close(ep, &slots[i]);
	free(slots);
	close(ep);
	return NULL;
}

static int cr_start(struct cr *cr, const struct sgb_opts *o, const struct sgb_login *login,
		    bool logins_only, unsigned concurrency, unsigned threads)
{
	memset(cr, 0, sizeof(*cr));
	cr->o = o;
	cr->login = *login;
	cr->logins_only = logins_only;
	if (concurrency == 0)
		concurrency = 1;
	if (threads == 0)
		threads = 1;
	if (threads > concurrency)
		threads = concurrency;
	cr->nthreads = threads;
	cr->th = calloc(threads, sizeof(*cr->th));
	cr->tids = calloc(threads, sizeof(*cr->tids));
	if (cr->th == NULL || cr->tids == NULL)
		return -1;
	for (unsigned i = 0; i < threads; i++) {
		cr->th[i].cr = cr;
		cr->th[i].nslots = concurrency / threads + (i < concurrency % threads);
		cr->th[i].first_id = i;
		if (pthread_create(&cr->tids[i], NULL, cr_thread_main, &cr->th[i]) != 0)
			return -1;
	}
	return 0;
}

static void cr_stop(struct cr *cr)
{
	atomic_store(&cr->stop, true);
	for (unsigned i = 0; i < cr->nthreads; i++)
		pthread_join(cr->tids[i], NULL);
}

/* Totals of the measured window. */
static void cr_collect(struct cr *cr, uint64_t *done, uint64_t *errors, struct sgb_lat *lat,
		       char *err, size_t errlen)
{
	*done = *errors = 0;
	err[0] = '\0';
	for (unsigned i = 0; i < cr->nthreads; i++) {
		struct cr_thread *t = &cr->th[i];

		*done += t->done;
		*errors += t->errors;
		if (err[0] == '\0' && t->err[0] != '\0')
			snprintf(err, errlen, "%s", t->err);
		for (size_t k = 0; lat != NULL && k < t->lat.n; k++)
			sgb_lat_add(lat, t->lat.ns[k]);
	}
}

static void cr_free(struct cr *cr)
{
	for (unsigned i = 0; i < cr->nthreads; i++)
		sgb_lat_free(&cr->th[i].lat);
	free(cr->th);
	free(cr->tids);
}

static const char *label_sp(const struct sgb_opts *o)
{
	return o->label != NULL ? " " : "";
}

static const char *label_of(const struct sgb_opts *o)
{
	return o->label != NULL ? o->label : "";
}

int sgb_mode_connrate(const struct sgb_opts *o, bool logins_only)
{
	struct cr cr;
	struct sgb_lat lat = {0};
	uint64_t done, errors, t0, t1;
	long long cpu0 = 0, cpu1 = 0;
	char err[512];
	struct sgb_json j;
	double secs, rate;

	if (cr_start(&cr, o, &o->login, logins_only, o->concurrency, o->threads) < 0) {
		fprintf(stderr, "sgbench: cannot start threads\n");
		return 1;
	}
	sgb_sleep_s(o->warmup);
	if (o->pid > 0)
		cpu0 = sgb_proc_cpu_ms(o->pid);
	t0 = sgb_now_ns();
	atomic_store(&cr.measuring, true);
	sgb_sleep_s(o->seconds);
	atomic_store(&cr.measuring, false);
	t1 = sgb_now_ns();
	if (o->pid > 0)
		cpu1 = sgb_proc_cpu_ms(o->pid);
	cr_stop(&cr);
	cr_collect(&cr, &done, &errors, &lat, err, sizeof(err));
	secs = (double)(t1 - t0) / 1e9;
	rate = (double)done / secs;
	sgb_json_begin(&j, o);
	sgb_json_int(&j, "concurrency", o->concurrency);
	sgb_json_int(&j, "threads", cr.nthreads);
	if (!logins_only)
		sgb_json_int(&j, "size", o->size);
	sgb_json_num(&j, "seconds", secs);
	sgb_json_int(&j, "completed", (long long)done);
	sgb_json_num(&j, logins_only ? "logins_per_s" : "conns_per_s", rate);
	sgb_lat_report(&lat, &j, "conn_");
	if (o->pid > 0) {
		sgb_json_int(&j, "daemon_cpu_ms", cpu1 - cpu0);
		if (done > 0)
			sgb_json_num(&j, "daemon_cpu_us_per_conn",
				     (double)(cpu1 - cpu0) * 1000 / (double)done);
	}
	sgb_json_int(&j, "errors", (long long)errors);
	if (err[0] != '\0')
		sgb_json_str(&j, "error", err);
	/* A few failures among thousands (a reset under load) are reported, not fatal. */
	sgb_json_bool(&j, "ok", done > 0 && errors * 100 <= done);
	sgb_json_end(&j);
	fprintf(stderr,
		"%s%s%s: concurrency %u: %.0f %s/s (%" PRIu64 " in %.2f s), "
		"p50 %.0f us, p99 %.0f us, %" PRIu64 " error(s)%s%s\n",
		label_of(o), label_sp(o), o->mode, o->concurrency, rate,
		logins_only ? "logins" : "connections", done, secs, sgb_lat_pct_us(&lat, 0.5),
		sgb_lat_pct_us(&lat, 0.99), errors, err[0] != '\0' ? "; first: " : "", err);
	sgb_lat_free(&lat);
	cr_free(&cr);
	return done > 0 && errors * 100 <= done ? 0 : 1;
}

/* One round trip on each session, so every relay has moved bytes both ways
 * (and allocated whatever it allocates for that) before memory is sampled. */
static int idle_touch(const struct sgb_opts *o, int *fds, unsigned n, char *err, size_t errlen)
{
	uint8_t buf[256], msg[256];
	size_t hl = strlen(SGB_HDR_ECHO);

	for (unsigned i = 0; i < n; i++) {
		uint64_t deadline = sgb_now_ns() + 10000000000u;
		size_t got = 0;

		memcpy(msg, SGB_HDR_ECHO, hl);
		memcpy(msg + hl, sgb_pattern_at(sgb_pattern_start(i)), 16);
		if (sgb_send_all(fds[i], msg, hl + 16, 10000) < 0) {
			snprintf(err, errlen, "session %u: send failed", i);
			return -1;
		}
		while (got < 16) {
			ssize_t r = recv(fds[i], buf + got, 16 - got, 0);

			if (r > 0) {
				got += (size_t)r;
				continue;
			}
			if (r == 0 || (errno != EAGAIN && errno != EINTR) ||
			    sgb_now_ns() > deadline) {
				snprintf(err, errlen, "session %u: no echo", i);
				return -1;
			}
			struct timespec ts = {0, 20000};

			nanosleep(&ts, NULL);
		}
		if (o->verify && sgb_pattern_check(sgb_pattern_start(i), buf, 16) != 0) {
			snprintf(err, errlen, "session %u: the echo differs", i);
			return -1;
		}
	}
	return 0;
}

int sgb_mode_idle(const struct sgb_opts *o)
{
	int *fds = calloc(o->sessions, sizeof(*fds));
	struct sgb_mem before, after, closed;
	unsigned errors = 0, opened;
	uint64_t t0, t1;
	char err[512] = "";
	struct sgb_json j;
	double per_rss, per_anon, per_pss;
	int ok;

	if (fds == NULL)
		return 1;
	if (sgb_proc_mem(o->pid, &before) < 0) {
		fprintf(stderr, "sgbench: idle: cannot read the memory of pid %d\n", (int)o->pid);
		free(fds);
		return 1;
	}
	t0 = sgb_now_ns();
	opened = sgb_open_sessions(o, o->sessions, o->concurrency, o->timeout, fds, &errors, err,
				   sizeof(err));
	t1 = sgb_now_ns();
	ok = opened == o->sessions;
	if (ok && idle_touch(o, fds, opened, err, sizeof(err)) < 0) {
		ok = 0;
		errors++;
	}
	sgb_sleep_s(o->settle);
	sgb_proc_mem(o->pid, &after);
	for (unsigned i = 0; i < opened; i++)
		close(fds[i]);
	sgb_sleep_s(o->settle);
	sgb_proc_mem(o->pid, &closed);
	per_rss = opened > 0 ? (double)(after.rss_kib - before.rss_kib) / opened : 0;
	per_anon = opened > 0 ? (double)(after.anon_kib - before.anon_kib) / opened : 0;
	per_pss = opened > 0 ? (double)(after.pss_kib - before.pss_kib) / opened : 0;
	sgb_json_begin(&j, o);
	sgb_json_int(&j, "sessions", o->sessions);
	sgb_json_int(&j, "opened", opened);
	sgb_json_num(&j, "open_seconds", (double)(t1 - t0) / 1e9);
	sgb_json_num(&j, "opens_per_s", opened / ((double)(t1 - t0) / 1e9));
	sgb_json_int(&j, "procs_before", before.nprocs);
	sgb_json_int(&j, "procs_during", after.nprocs);
	sgb_json_int(&j, "rss_kib_before", before.rss_kib);
	sgb_json_int(&j, "rss_kib_during", after.rss_kib);
	sgb_json_int(&j, "rss_kib_after_close", closed.rss_kib);
	sgb_json_int(&j, "anon_kib_before", before.anon_kib);
	sgb_json_int(&j, "anon_kib_during", after.anon_kib);
	sgb_json_int(&j, "pss_kib_before", before.pss_kib);
	sgb_json_int(&j, "pss_kib_during", after.pss_kib);
	sgb_json_int(&j, "fds_before", before.fds);
	sgb_json_int(&j, "fds_during", after.fds);
	sgb_json_num(&j, "fds_per_session",
		     opened > 0 ? (double)(after.fds - before.fds) / opened : 0);
	sgb_json_num(&j, "rss_kib_per_session", per_rss);
	sgb_json_num(&j, "anon_kib_per_session", per_anon);
	sgb_json_num(&j, "pss_kib_per_session", per_pss);
	sgb_json_int(&j, "errors", errors);
	if (err[0] != '\0')
		sgb_json_str(&j, "error", err);
	sgb_json_bool(&j, "ok", ok);
	sgb_json_end(&j);
	fprintf(stderr,
		"%s%sidle: %u of %u sessions in %.2f s; per session: RSS %.2f KiB, anon %.2f KiB, "
		"PSS %.2f KiB (%u process(es))%s%s\n",
		label_of(o), label_sp(o), opened, o->sessions, (double)(t1 - t0) / 1e9, per_rss,
		per_anon, per_pss, after.nprocs, err[0] != '\0' ? "; " : "", err);
	free(fds);
	return ok ? 0 : 1;
}

int sgb_mode_storm(const struct sgb_opts *o)
{
	int *fds = calloc(o->conns, sizeof(*fds));
	struct sgb_pp p;
	struct cr storm;
	struct sgb_lat base = {0}, load = {0};
	uint64_t nbase, nload, logins = 0, lerrors = 0, t0, t1;
	unsigned errors = 0, opened;
	char err[512] = "", lerr[512] = "";
	struct sgb_json j;
	double p99_base, p99_load, secs;

	memset(&p, 0, sizeof(p));
	if (fds == NULL)
		return 1;
	opened = sgb_open_sessions(o, o->conns, o->concurrency, o->timeout, fds, &errors, err,
				   sizeof(err));
	if (opened < o->conns || sgb_pp_send_headers(fds, opened) < 0) {
		fprintf(stderr, "sgbench: storm: opened %u of %u sessions: %s\n", opened, o->conns,
			err);
		for (unsigned i = 0; i < opened; i++)
			close(fds[i]);
		free(fds);
		return 1;
	}
	p.size = o->size;
	p.verify = o->verify;
	p.interval_ns = (uint64_t)(1e9 / o->rate);
	atomic_store(&p.phase, SGB_PP_PHASES);
	if (sgb_pp_start(&p, fds, o->conns, 1) < 0)
		return 1;
	sgb_sleep_s(o->warmup);
	atomic_store(&p.phase, 0); /* baseline */
	sgb_sleep_s(o->seconds);
	atomic_store(&p.phase, SGB_PP_PHASES);
	if (cr_start(&storm, o, &o->login, true, o->concurrency, 1) < 0)
		return 1;
	/* Let the storm fill the password-check queue before measuring. */
	sgb_sleep_s(o->warmup);
	t0 = sgb_now_ns();
	atomic_store(&storm.measuring, true);
	atomic_store(&p.phase, 1); /* under the storm */
	sgb_sleep_s(o->seconds);
	atomic_store(&p.phase, SGB_PP_PHASES);
	atomic_store(&storm.measuring, false);
	t1 = sgb_now_ns();
	cr_stop(&storm);
	sgb_pp_stop(&p);
	errors = 0;
	sgb_pp_collect(&p, 0, &base, &nbase, &errors, err, sizeof(err));
	sgb_pp_collect(&p, 1, &load, &nload, NULL, NULL, 0);
	cr_collect(&storm, &logins, &lerrors, NULL, lerr, sizeof(lerr));
	secs = (double)(t1 - t0) / 1e9;
	sgb_json_begin(&j, o);
	sgb_json_int(&j, "conns", o->conns);
	sgb_json_num(&j, "rate_per_conn", o->rate);
	sgb_json_int(&j, "storm_concurrency", o->concurrency);
	sgb_json_num(&j, "seconds", o->seconds);
	sgb_lat_report(&base, &j, "base_");
	sgb_lat_report(&load, &j, "storm_");
	p99_base = sgb_lat_pct_us(&base, 0.99);
	p99_load = sgb_lat_pct_us(&load, 0.99);
	sgb_json_num(&j, "p99_ratio", p99_load / p99_base);
	sgb_json_num(&j, "p50_ratio", sgb_lat_pct_us(&load, 0.5) / sgb_lat_pct_us(&base, 0.5));
	sgb_json_num(&j, "storm_logins_per_s", (double)logins / secs);
	sgb_json_int(&j, "storm_errors", (long long)lerrors);
	if (lerr[0] != '\0')
		sgb_json_str(&j, "storm_error", lerr);
	sgb_json_int(&j, "errors", errors);
	if (errors > 0)
		sgb_json_str(&j, "error", err);
	sgb_json_bool(&j, "ok", errors == 0 && nbase > 0 && nload > 0 && logins > 0);
	sgb_json_end(&j);
	fprintf(stderr,
		"%s%sstorm: %u session(s) at %.0f/s each: p50/p99 %.1f/%.1f us before, "
		"%.1f/%.1f us during %.0f logins/s (p99 x%.2f)%s%s\n",
		label_of(o), label_sp(o), o->conns, o->rate, sgb_lat_pct_us(&base, 0.5), p99_base,
		sgb_lat_pct_us(&load, 0.5), p99_load, (double)logins / secs, p99_load / p99_base,
		lerr[0] != '\0' ? "; storm: " : "", lerr);
	sgb_lat_free(&base);
	sgb_lat_free(&load);
	sgb_pp_free(&p);
	cr_free(&storm);
	free(fds);
	return errors == 0 && nbase > 0 && nload > 0 && logins > 0 ? 0 : 1;
}
