/* worker: a thread with its own loop and relay buffer (see worker.h). */
#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "session.h"

struct worker *worker_create(unsigned id, struct auth_pool *auth, size_t scratch_len,
			     struct errbuf *err)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	w->id = id;
	w->auth = auth;
	w->scratch_len = scratch_len;
	w->scratch = malloc(scratch_len);
	w->loop = loop_create(err);
	if (w->scratch == NULL || w->loop == NULL) {
		if (w->scratch == NULL)
			errbuf_set(err, "out of memory");
		worker_free(w);
		return NULL;
	}
	loop_set_data(w->loop, w);
	return w;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];

	/* For top -H, perf and gdb: "sockgate-w0", "sockgate-w1", ... */
	snprintf(name, sizeof(name), "sockgate-w%u", w->id);
	pthread_setname_np(pthread_self(), name);
	if (loop_run(w->loop) < 0)
		log_msg(LOG_CRIT, "worker %u: event loop failed", w->id);
	return NULL;
}

int worker_start(struct worker *w, struct errbuf *err)
{
	sigset_t all, old;
	int rc;

	/* Signals are the main thread's (signalfd): block them here. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return errbuf_errno(err, rc, "cannot start worker thread");
	w->running = true;
	return 0;
}

static void worker_stop_task(struct loop_task *t)
{
	struct worker *w = loop_data(t->arg);

	session_close_all(w, w->stop_reason);
	loop_stop(w->loop);
}

void worker_stop(struct worker *w, const char *reason)
{
	if (!w->running)
		return;
	w->stop_reason = reason;
	loop_post(w->loop, &w->stop_task, worker_stop_task, w->loop);
	pthread_join(w->thread, NULL);
	w->running = false;
}

void worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	loop_free(w->loop);
	free(w->scratch);
	free(w);
}

static void worker_beat_task(struct loop_task *t)
{
	struct worker *w = t->arg;

	__atomic_store_n(&w->beat_pending, false, __ATOMIC_RELEASE);
}

void worker_heartbeat(struct worker *w, uint64_t now_ms)
{
	if (__atomic_load_n(&w->beat_pending, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&w->beat_sent_ms, now_ms, __ATOMIC_RELAXED);
	__atomic_store_n(&w->beat_pending, true, __ATOMIC_RELEASE);
	loop_post(w->loop, &w->beat_task, worker_beat_task, w);
}

uint64_t worker_stalled_ms(struct worker *w, uint64_t now_ms)
{
	uint64_t sent;

	if (!__atomic_load_n(&w->beat_pending, __ATOMIC_ACQUIRE))
		return 0;
	sent = __atomic_load_n(&w->beat_sent_ms, __ATOMIC_RELAXED);
	return now_ms > sent ? now_ms - sent : 0;
}

struct worker *worker_least_loaded(struct worker **workers, unsigned n)
{
	struct worker *best = workers[0];
	unsigned best_n = __atomic_load_n(&best->sessions, __ATOMIC_RELAXED);

	for (unsigned i = 1; i < n; i++) {
		unsigned c = __atomic_load_n(&workers[i]->sessions, __ATOMIC_RELAXED);

		if (c < best_n) {
			best = workers[i];
			best_n = c;
		}
	}
	return best;
}
