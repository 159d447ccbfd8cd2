/* auth: the password-check thread pool (see auth.h). */
#include "auth.h"
#include "fault.h"
#include "hash_memory.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct auth_thread {
	struct auth_pool *pool;
	pthread_t id;
	uint64_t busy_since_ms; /* atomic: when its check began; 0 while it waits */
};

struct auth_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC, like loop_clock_ms() */
	struct auth_job *head, *tail;
	unsigned queued, running, max_queue;
	unsigned max_threads, threads_relaying;
	bool stopping, background;
	unsigned n_threads;
	struct auth_thread *threads;
	bool fault_hang;            /* a thread is to block (fault.h) */
	struct totp_replay *replay; /* codes used (the daemon's: it outlives reloads) */
	uint64_t relayed_ms;        /* atomic: the last auth_pool_note_relaying(), 0 never */
};

static void auth_complete(struct auth_job *job, enum auth_result result)
{
	job->result = result;
	explicit_bzero(job->password, sizeof(job->password));
	explicit_bzero(job->code, sizeof(job->code));
	loop_post(job->reply_loop, &job->task, job->done, job->arg);
}

/* SCHED_BATCH never preempts on wake-up, nice 19 weighs least within the
 * daemon's scheduling group, so the event loops take the CPU from a check. Not
 * SCHED_IDLE: the kernel counts a CPU running only SCHED_IDLE tasks as idle when
 * it places a waking task, and an upstream or client of another scheduling group
 * put there waited behind the check for milliseconds (bench/CHANGES.md). Failure
 * (a sandbox forbids it) is harmless. */
static void auth_lower_priority(void)
{
	struct sched_param sp = {.sched_priority = 0};

	(void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
}

void auth_pool_note_relaying(struct auth_pool *pool, uint64_t now_ms)
{
	/* Every worker calls this on every relay event: write the shared line
	 * at most once a millisecond. */
	if (__atomic_load_n(&pool->relayed_ms, __ATOMIC_RELAXED) != now_ms)
		__atomic_store_n(&pool->relayed_ms, now_ms, __ATOMIC_RELAXED);
}

unsigned auth_pool_allowed(struct auth_pool *pool, uint64_t now_ms)
{
	uint64_t last = __atomic_load_n(&pool->relayed_ms, __ATOMIC_RELAXED);

	if (last != 0 && now_ms < last + AUTH_RELAYING_MS)
		return pool->threads_relaying;
	return pool->max_threads;
}

/* Waits for work, a stop, or the end of the relaying window (lock held). */
static void auth_wait_relaying(struct auth_pool *pool, uint64_t now_ms)
{
	uint64_t last = __atomic_load_n(&pool->relayed_ms, __ATOMIC_RELAXED);
	uint64_t wait_ms = last + AUTH_RELAYING_MS > now_ms ? last + AUTH_RELAYING_MS - now_ms : 1;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(wait_ms / 1000);
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	(void)pthread_cond_timedwait(&pool->cond, &pool->lock, &ts);
}

/* A reload that lands while a check runs may remove the user or change the
 * password: then the answer of the old entry no longer holds, and the check
 * is made again on the new one (a few times at most: reloads are rare). */
#define AUTH_MAX_RECHECKS 3

/* Whether user gets the same answer from now as from was: the same entry, or
 * none in either. */
static bool auth_same_answer(const struct credentials *was, const struct credentials *now,
			     const char *user)
{
	if (now == NULL)
		return false;
	if (credentials_unchanged(was, now, user))
		return true;
	return !credentials_has_user(was, user) && !credentials_has_user(now, user);
}

/* A code is good once: the first login that shows it takes it. */
static enum auth_result auth_claim_code(struct auth_pool *pool, struct auth_job *job,
					const struct credentials_verdict *v, time_t now)
{
	if (pool->replay == NULL ||
	    totp_replay_claim(pool->replay, v->totp_key, v->totp_step, v->totp_period, now))
		return AUTH_OK;
	job->denial = "verification code already used";
	return AUTH_DENIED;
}

static enum auth_result auth_check(struct auth_pool *pool, struct auth_job *job)
{
	struct credentials *creds = credentials_slot_get(job->slot), *now;
	struct credentials_request req = {
		.user = job->user,
		.password = job->password,
		.code = job->with_code ? job->code : NULL,
		.totp_window = job->totp_window,
		.target = job->target,
		.peer = (const struct sockaddr *)&job->peer,
	};

	for (unsigned i = 0;; i++) {
		struct credentials_verdict v;

		if (creds == NULL)
			return AUTH_NO_CREDENTIALS;
		req.now = time(NULL);
		hash_memory_begin();
		credentials_check(creds, &req, &v);
		hash_memory_end();
		now = credentials_slot_get(job->slot);
		if (now == creds || auth_same_answer(creds, now, job->user)) {
			credentials_unref(now);
			credentials_unref(creds);
			job->denial = credentials_denial_text(v.why);
			if (v.result == CREDENTIALS_OK)
				return job->with_code ? auth_claim_code(pool, job, &v, req.now)
						      : AUTH_OK;
			return v.result == CREDENTIALS_DENIED ? AUTH_DENIED : AUTH_ERROR;
		}
		credentials_unref(creds);
		creds = now;
		if (i == AUTH_MAX_RECHECKS) {
			credentials_unref(creds);
			return AUTH_TEMPFAIL;
		}
	}
}

static void *auth_thread(void *arg)
{
	struct auth_thread *self = arg;
	struct auth_pool *pool = self->pool;

	pthread_setname_np(pthread_self(), "sockgate-auth"); /* for top -H, perf, gdb */
	if (pool->background)
		auth_lower_priority();

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct auth_job *job;
		bool ready = pool->head != NULL &&
			     (pool->stopping ||
			      pool->running < auth_pool_allowed(pool, loop_clock_ms()));

		if (!ready && hash_memory_holding()) {
			/* Checks back to back reuse the hash's memory; a
			 * thread that waits gives it back (unlocked: the
			 * event loops take this lock to queue a check). */
			pthread_mutex_unlock(&pool->lock);
			hash_memory_release();
			pthread_mutex_lock(&pool->lock);
			continue;
		}
		if (pool->fault_hang) {
			pool->fault_hang = false;
			pthread_mutex_unlock(&pool->lock);
			__atomic_store_n(&self->busy_since_ms, loop_clock_ms(), __ATOMIC_RELAXED);
			fault_block();
			__atomic_store_n(&self->busy_since_ms, 0, __ATOMIC_RELAXED);
			pthread_mutex_lock(&pool->lock);
			continue;
		}
		if (pool->head == NULL) {
			if (pool->stopping)
				break;
			pthread_cond_wait(&pool->cond, &pool->lock);
			continue;
		}
		if (!ready) {
			/* Sessions relay and enough checks run. The running
			 * ones take the queue on as they finish. */
			auth_wait_relaying(pool, loop_clock_ms());
			continue;
		}
		job = pool->head;
		pool->head = job->next;
		if (pool->head == NULL)
			pool->tail = NULL;
		pool->queued--;
		if (pool->stopping) {
			pthread_mutex_unlock(&pool->lock);
			auth_complete(job, AUTH_TEMPFAIL);
			pthread_mutex_lock(&pool->lock);
			continue;
		}
		pool->running++;
		pthread_mutex_unlock(&pool->lock);

		__atomic_store_n(&self->busy_since_ms, loop_clock_ms(), __ATOMIC_RELAXED);
		auth_complete(job, auth_check(pool, job));
		__atomic_store_n(&self->busy_since_ms, 0, __ATOMIC_RELAXED);

		pthread_mutex_lock(&pool->lock);
		pool->running--;
	}
	pthread_mutex_unlock(&pool->lock);
	hash_memory_release();
	return NULL;
}

struct auth_pool *auth_pool_create(const struct auth_pool_settings *settings, struct errbuf *err)
{
	struct auth_pool *pool = calloc(1, sizeof(*pool));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = settings->threads;
	pthread_condattr_t attr;
	sigset_t all, old;

	if (pool == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	if (cpus < 1)
		cpus = 1;
	if (threads == 0)
		threads = (unsigned)cpus;
	pool->max_threads = threads;
	pool->threads_relaying = settings->threads_relaying;
	if (pool->threads_relaying == 0)
		pool->threads_relaying = cpus > 1 ? (unsigned)cpus - 1 : 1;
	if (pool->threads_relaying > threads)
		pool->threads_relaying = threads;
	pool->threads = calloc(threads, sizeof(*pool->threads));
	if (pool->threads == NULL) {
		free(pool);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&pool->lock, NULL);
	/* The relaying window's deadline is on CLOCK_MONOTONIC; glibc cannot
	 * fail these, but a realtime clock here would make held-back threads
	 * spin, so check anyway. */
	if (pthread_condattr_init(&attr) != 0 ||
	    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&pool->cond, &attr) != 0) {
		pthread_mutex_destroy(&pool->lock);
		free(pool->threads);
		free(pool);
		errbuf_set(err, "cannot set up the password-check queue");
		return NULL;
	}
	pthread_condattr_destroy(&attr);
	pool->max_queue = settings->max_queue;
	pool->background = settings->background;
	pool->replay = settings->replay;
	/* Signals belong to the main thread's signalfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; pool->n_threads < threads; pool->n_threads++) {
		struct auth_thread *t = &pool->threads[pool->n_threads];
		int rc;

		t->pool = pool;
		rc = pthread_create(&t->id, NULL, auth_thread, t);

		if (rc != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			errbuf_errno(err, rc, "cannot start password-check thread");
			auth_pool_free(pool);
			return NULL;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pool;
}

uint64_t auth_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int auth_pool_submit(struct auth_pool *pool, struct auth_job *job)
{
	job->submitted_us = auth_clock_us();
	pthread_mutex_lock(&pool->lock);
	if (pool->stopping || pool->queued >= pool->max_queue) {
		pthread_mutex_unlock(&pool->lock);
		return -1;
	}
	job->next = NULL;
	if (pool->tail != NULL)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	/* All: one woken thread may be held back (sessions relay) while an idle
	 * one could start the check. A few wake-ups per login are nothing. */
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

unsigned auth_pool_pending(struct auth_pool *pool)
{
	unsigned n;

	pthread_mutex_lock(&pool->lock);
	n = pool->queued + pool->running;
	pthread_mutex_unlock(&pool->lock);
	return n;
}

uint64_t auth_pool_stalled_ms(struct auth_pool *pool, uint64_t now_ms)
{
	uint64_t longest = 0;

	/* The array is fixed once the pool runs; each entry is its thread's. */
	for (unsigned i = 0; i < pool->n_threads; i++) {
		uint64_t since = __atomic_load_n(&pool->threads[i].busy_since_ms, __ATOMIC_RELAXED);

		if (since != 0 && now_ms > since && now_ms - since > longest)
			longest = now_ms - since;
	}
	return longest;
}

void auth_pool_fault_hang(struct auth_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->fault_hang = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}

void auth_pool_stop(struct auth_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->n_threads; i++)
		pthread_join(pool->threads[i].id, NULL);
	pool->n_threads = 0;
}

void auth_pool_free(struct auth_pool *pool)
{
	if (pool == NULL)
		return;
	auth_pool_stop(pool);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool->threads);
	free(pool);
}
