/* auth: the password-check thread pool (see auth.h). */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct auth_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct auth_job *head, *tail;
	unsigned queued, running, max_queue;
	bool stopping;
	int nice;
	unsigned n_threads;
	pthread_t *threads;
};

static void auth_complete(struct auth_job *job, enum auth_result result)
{
	job->result = result;
	explicit_bzero(job->password, sizeof(job->password));
	credentials_unref(job->creds);
	job->creds = NULL;
	loop_post(job->reply_loop, &job->task, job->done, job->arg);
}

static void *auth_thread(void *arg)
{
	struct auth_pool *pool = arg;

	pthread_setname_np(pthread_self(), "sockgate-auth"); /* for top -H, perf, gdb */
	/* Lower priority than the relay loops: a login storm must not slow the
	 * sessions already relaying. SCHED_IDLE runs the checks only on CPU time
	 * the relays leave (and the relays preempt them at once); where that is
	 * refused, a nice value. Failure (a sandbox forbids both) is harmless. */
	if (pool->nice != 0) {
		struct sched_param sp = {.sched_priority = 0};

		if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
			(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), pool->nice);
	}

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct auth_job *job;
		enum credentials_result r;

		while (pool->head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (pool->head == NULL)
			break;
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

		r = credentials_verify(job->creds, job->user, job->password);
		auth_complete(job, r == CREDENTIALS_OK ? AUTH_OK :
				   r == CREDENTIALS_DENIED ? AUTH_DENIED : AUTH_ERROR);

		pthread_mutex_lock(&pool->lock);
		pool->running--;
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

struct auth_pool *auth_pool_create(unsigned threads, unsigned max_queue, int nice,
				   struct errbuf *err)
{
	struct auth_pool *pool = calloc(1, sizeof(*pool));
	sigset_t all, old;

	if (pool == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (unsigned)n : 1;
	}
	pool->threads = calloc(threads, sizeof(*pool->threads));
	if (pool->threads == NULL) {
		free(pool);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->max_queue = max_queue;
	pool->nice = nice;
	/* Signals belong to the main thread's signalfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; pool->n_threads < threads; pool->n_threads++) {
		int rc = pthread_create(&pool->threads[pool->n_threads], NULL, auth_thread, pool);

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

int auth_pool_submit(struct auth_pool *pool, struct auth_job *job)
{
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
	pthread_cond_signal(&pool->cond);
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

void auth_pool_stop(struct auth_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->n_threads; i++)
		pthread_join(pool->threads[i], NULL);
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
