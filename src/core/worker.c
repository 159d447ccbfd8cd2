/* worker: a thread with its own loop and session set (see worker.h). */
#include "worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"

struct worker {
	unsigned id;
	pthread_t thread;
	bool running;
	struct loop *loop;
	struct session_set *sessions;
	struct loop_task stop_task;
	const char *stop_reason;
	/* The watchdog's question to the loop, and whether it is unanswered. */
	struct loop_task beat_task;
	bool beat_pending;     /* atomic */
	uint64_t beat_sent_ms; /* atomic: when the pending one was posted */
};

struct worker *worker_create(const struct worker_settings *set, struct errbuf *err)
{
	struct worker *w = calloc(1, sizeof(*w));
	struct session_env env = {
		.auth = set->auth,
		.pam = set->pam,
		.admission = set->admission,
		.passes = set->passes,
		.penalties = set->penalties,
		.lograte = set->lograte,
		.stats = set->stats,
		.recorder = set->recorder,
		.carry = set->carry,
		.scratch_len = set->scratch_len,
	};

	if (w == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	w->id = set->id;
	w->loop = loop_create(err);
	if (w->loop == NULL) {
		worker_free(w);
		return NULL;
	}
	/* One read buffer per worker, held by no session: large reads win
	 * (the cost is per system call, not per byte). */
	env.loop = w->loop;
	w->sessions = session_set_create(&env, err);
	if (w->sessions == NULL) {
		worker_free(w);
		return NULL;
	}
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
	struct worker *w = t->arg;

	if (w->stop_reason == NULL)
		session_set_hand_over(w->sessions);
	else
		session_set_close_all(w->sessions, w->stop_reason);
	loop_stop(w->loop);
}

void worker_stop(struct worker *w, const char *reason)
{
	if (!w->running)
		return;
	w->stop_reason = reason;
	loop_post(w->loop, &w->stop_task, worker_stop_task, w);
	pthread_join(w->thread, NULL);
	w->running = false;
}

void worker_hand_over(struct worker *w)
{
	if (!w->running)
		return;
	w->stop_reason = NULL;
	loop_post(w->loop, &w->stop_task, worker_stop_task, w);
	pthread_join(w->thread, NULL);
	w->running = false;
}

void worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	/* The loop's last round ran the deferred frees of the closed sessions. */
	session_set_free(w->sessions);
	loop_free(w->loop);
	free(w);
}

unsigned worker_id(const struct worker *w)
{
	return w->id;
}

struct loop *worker_loop(struct worker *w)
{
	return w->loop;
}

struct session_set *worker_sessions(struct worker *w)
{
	return w->sessions;
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
	unsigned best_n = session_set_count(best->sessions);

	for (unsigned i = 1; i < n; i++) {
		unsigned c = session_set_count(workers[i]->sessions);

		if (c < best_n) {
			best = workers[i];
			best_n = c;
		}
	}
	return best;
}

/* One worker_call() under way: the caller waits on done. */
struct worker_call {
	struct loop_task task;
	struct session_set *sessions;
	worker_call_fn *fn;
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started, done, abandoned;
};

static void worker_call_task(struct loop_task *t)
{
	struct worker_call *c = t->arg;
	bool abandoned;

	pthread_mutex_lock(&c->lock);
	abandoned = c->abandoned;
	c->started = !abandoned;
	pthread_mutex_unlock(&c->lock);
	if (!abandoned)
		c->fn(c->sessions, c->arg);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	abandoned = c->abandoned;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	/* The caller gave up: the call is ours to free. */
	if (abandoned) {
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		free(c);
	}
}

int worker_call(struct worker *w, worker_call_fn *fn, void *arg, unsigned timeout_ms)
{
	struct worker_call *c = calloc(1, sizeof(*c));
	pthread_condattr_t attr;
	struct timespec until;
	bool done;

	if (c == NULL)
		return -1;
	c->sessions = w->sessions;
	c->fn = fn;
	c->arg = arg;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &attr);
	pthread_condattr_destroy(&attr);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	loop_post(w->loop, &c->task, worker_call_task, c);
	pthread_mutex_lock(&c->lock);
	while (!c->done && pthread_cond_timedwait(&c->cond, &c->lock, &until) == 0)
		;
	/* Begun: arg is in use, so wait for the end whatever the time. */
	while (!c->done && c->started)
		pthread_cond_wait(&c->cond, &c->lock);
	done = c->done;
	if (!done)
		c->abandoned = true; /* the task frees c when it runs */
	pthread_mutex_unlock(&c->lock);
	if (done) {
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		free(c);
	}
	return done ? 0 : -1;
}
