/* test_auth: the password-check pool. The check itself is replaced at link time
 * (--wrap=credentials_check) by one that holds each check until the test lets
 * it go, so the test sees how many checks run at once: all threads while no
 * session relays, one CPU's worth fewer while sessions relay, all again once
 * the relaying window has passed, and queued checks answered at a stop. It can
 * also use working memory as libxcrypt's yescrypt does, to show that checks
 * back to back reuse it and a thread that waits gives it back. Checks read the
 * credentials in force when they start, and check again when a reload changed
 * the user's entry meanwhile. */
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"
#include <crypt.h>

#include "auth.h"
#include "credentials.h"
#include "hash_memory.h"
#include "loop.h"

#define WAIT_MS      5000  /* bound on every wait for something that must happen */
#define QUIET_MS     200   /* how long something that must not happen is watched for */
#define FAR_MS       60000 /* a relaying time that keeps the window open for the whole test */
#define REGION_BYTES (2 * HASH_MEMORY_MIN_BYTES)

/* What the fake check and the reply loop share with the test. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned inside, max_inside; /* checks running now, and at most */
	unsigned released;           /* checks allowed to finish */
	unsigned entered;            /* checks started */
	unsigned done[AUTH_NO_CREDENTIALS + 1];
	const struct credentials *seen[16]; /* by ticket: what the check was given */
	unsigned n_done;
	bool use_memory;                      /* each check maps, fills and unmaps a region */
	long faults[2];                       /* by ticket: the page faults filling it took */
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER}; /* cond: on CLOCK_MONOTONIC, see main() */

void __wrap_credentials_check(const struct credentials *c, const struct credentials_request *req,
			      struct credentials_verdict *v);

static long thread_minor_faults(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_minflt : -1;
}

/* What yescrypt does with its working memory (fake.lock held). */
static void use_memory(unsigned ticket)
{
	long before = thread_minor_faults();
	char *p = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);

	if (p == MAP_FAILED)
		return;
	memset(p, 0x5a, REGION_BYTES);
	fake.faults[ticket] = thread_minor_faults() - before;
	(void)munmap(p, REGION_BYTES);
}

void __wrap_credentials_check(const struct credentials *c, const struct credentials_request *req,
			      struct credentials_verdict *v)
{
	unsigned ticket;

	(void)req;
	memset(v, 0, sizeof(*v));
	v->result = CREDENTIALS_OK;
	pthread_mutex_lock(&fake.lock);
	ticket = fake.entered++;
	if (ticket < sizeof(fake.seen) / sizeof(fake.seen[0]))
		fake.seen[ticket] = c;
	fake.inside++;
	if (fake.inside > fake.max_inside)
		fake.max_inside = fake.inside;
	pthread_cond_broadcast(&fake.cond);
	if (fake.use_memory && ticket < 2)
		use_memory(ticket);
	while (fake.released <= ticket)
		pthread_cond_wait(&fake.cond, &fake.lock);
	fake.inside--;
	pthread_mutex_unlock(&fake.lock);
}

static void job_done(struct loop_task *task)
{
	struct auth_job *job = task->arg;

	pthread_mutex_lock(&fake.lock);
	fake.done[job->result]++;
	fake.n_done++;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
}

static uint64_t now_ms(void)
{
	return loop_clock_ms();
}

/* Waits until *value reaches want or ms pass; true if it did. Takes the lock
 * itself, so that a failed assertion never leaves it held. */
static bool wait_for(const unsigned *value, unsigned want, unsigned ms)
{
	uint64_t until = now_ms() + ms;
	bool reached;

	pthread_mutex_lock(&fake.lock);
	while (*value < want && now_ms() < until) {
		struct timespec ts;
		uint64_t left = until - now_ms();

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)(left / 1000);
		ts.tv_nsec += (long)(left % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&fake.cond, &fake.lock, &ts);
	}
	reached = *value >= want;
	pthread_mutex_unlock(&fake.lock);
	return reached;
}

static unsigned get(const unsigned *value)
{
	unsigned v;

	pthread_mutex_lock(&fake.lock);
	v = *value;
	pthread_mutex_unlock(&fake.lock);
	return v;
}

/* Lets the first n checks finish. */
static void release(unsigned n)
{
	pthread_mutex_lock(&fake.lock);
	fake.released = n;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
}

struct env {
	struct credentials_slot *slot;
	struct loop *loop;
	pthread_t loop_thread;
	struct auth_pool *pool;
	pthread_t stopper;
	bool stopping;
	struct auth_job jobs[8];
};

static struct env *current; /* the test's, for the teardown */

static struct credentials *creds_with(const char *password);
static void env_use(struct env *e, struct credentials *c);

static void *run_loop(void *arg)
{
	(void)loop_run(arg);
	return NULL;
}

static struct env *env_new(unsigned threads, unsigned threads_relaying)
{
	struct auth_pool_settings s = {
		.threads = threads,
		.threads_relaying = threads_relaying,
		.max_queue = 16,
	};
	struct env *e = calloc(1, sizeof(*e));
	struct errbuf err;

	assert_non_null(e);
	current = e;
	pthread_mutex_lock(&fake.lock);
	memset(fake.done, 0, sizeof(fake.done));
	fake.inside = fake.max_inside = fake.released = fake.entered = fake.n_done = 0;
	fake.use_memory = false;
	memset(fake.faults, 0, sizeof(fake.faults));
	memset(fake.seen, 0, sizeof(fake.seen));
	pthread_mutex_unlock(&fake.lock);
	e->slot = credentials_slot_create(NULL);
	assert_non_null(e->slot);
	env_use(e, creds_with("secret"));
	e->loop = loop_create(&err);
	assert_non_null(e->loop);
	assert_int_equal(pthread_create(&e->loop_thread, NULL, run_loop, e->loop), 0);
	e->pool = auth_pool_create(&s, &err);
	assert_non_null(e->pool);
	return e;
}

static void submit(struct env *e, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct auth_job *job = &e->jobs[i];

		memset(job, 0, sizeof(*job));
		strcpy(job->user, "alice");
		strcpy(job->password, "secret");
		job->reply_loop = e->loop;
		job->done = job_done;
		job->arg = job;
		job->slot = e->slot;
		assert_int_equal(auth_pool_submit(e->pool, job), 0);
	}
}

/* Lets every check finish and frees everything. The teardown calls it after
 * every test, also one that failed, so no test leaves checks blocked for the
 * next one. */
static void env_free(struct env *e)
{
	release(1000);
	if (e->stopping)
		pthread_join(e->stopper, NULL);
	auth_pool_free(e->pool); /* joins the threads: every answer is posted */
	if (e->loop != NULL) {
		loop_stop(e->loop);
		pthread_join(e->loop_thread, NULL);
		loop_free(e->loop);
	}
	credentials_slot_free(e->slot);
	free(e);
	current = NULL;
}

static int teardown(void **state)
{
	(void)state;
	if (current != NULL)
		env_free(current);
	return 0;
}

/* Lets every check finish and waits for n answers; the teardown frees. */
static void finish(unsigned n)
{
	release(1000);
	assert_true(wait_for(&fake.n_done, n, WAIT_MS));
}

/* A credentials snapshot with alice's password set to password (sha256-crypt
 * at its cheapest: the check itself is the fake). */
static struct credentials *creds_with(const char *password)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	struct credentials *c;
	struct errbuf err;
	char text[512];

	assert_non_null(cd);
	assert_non_null(crypt_r(password, "$5$rounds=1000$testsalt$", cd));
	snprintf(text, sizeof(text), "alice:%s\n", cd->output);
	free(cd);
	c = credentials_parse("test", text, strlen(text), &err);
	assert_non_null(c);
	return c;
}

static void env_use(struct env *e, struct credentials *c)
{
	credentials_slot_set(e->slot, c);
	credentials_unref(c);
}

static void all_threads_check_while_nothing_relays(void **state)
{
	struct env *e = env_new(2, 1);

	(void)state;
	submit(e, 2);
	assert_true(wait_for(&fake.entered, 2, WAIT_MS));
	assert_int_equal(get(&fake.max_inside), 2);
	finish(2);
	assert_int_equal(get(&fake.done[AUTH_OK]), 2);
}

static void one_thread_fewer_while_sessions_relay(void **state)
{
	struct env *e = env_new(2, 1);

	(void)state;
	/* Relaying "until" far ahead: however slow the machine, the window
	 * does not end during the test. */
	auth_pool_note_relaying(e->pool, now_ms() + FAR_MS);
	submit(e, 3);
	for (unsigned i = 1; i <= 3; i++) {
		/* Check i runs; nothing else starts while sessions keep relaying. */
		assert_true(wait_for(&fake.entered, i, WAIT_MS));
		assert_false(wait_for(&fake.entered, i + 1, QUIET_MS));
		assert_int_equal(get(&fake.inside), 1);
		release(i);
	}
	assert_true(wait_for(&fake.n_done, 3, WAIT_MS));
	assert_int_equal(get(&fake.max_inside), 1);
	finish(3);
	assert_int_equal(get(&fake.done[AUTH_OK]), 3);
}

static void all_threads_again_when_relaying_stops(void **state)
{
	struct env *e = env_new(2, 1);
	uint64_t start = now_ms();

	(void)state;
	auth_pool_note_relaying(e->pool, start);
	submit(e, 2);
	/* Nobody releases the first check: the second starts when the window
	 * after the last relayed byte has passed. */
	assert_true(wait_for(&fake.entered, 2, AUTH_RELAYING_MS + WAIT_MS));
	assert_true(now_ms() >= start + AUTH_RELAYING_MS);
	assert_int_equal(get(&fake.max_inside), 2);
	finish(2);
}

static void allowed_follows_the_window(void **state)
{
	struct env *e = env_new(4, 3);

	(void)state;
	assert_int_equal(auth_pool_allowed(e->pool, 5000), 4);
	auth_pool_note_relaying(e->pool, 5000);
	assert_int_equal(auth_pool_allowed(e->pool, 5000), 3);
	assert_int_equal(auth_pool_allowed(e->pool, 5000 + AUTH_RELAYING_MS - 1), 3);
	assert_int_equal(auth_pool_allowed(e->pool, 5000 + AUTH_RELAYING_MS), 4);
	env_free(e);

	/* More while relaying than in all is the same as all. */
	e = env_new(2, 8);
	auth_pool_note_relaying(e->pool, 5000);
	assert_int_equal(auth_pool_allowed(e->pool, 5000), 2);
	env_free(e);

	/* One thread is never held back: logins must go on. */
	e = env_new(1, 0);
	auth_pool_note_relaying(e->pool, 5000);
	assert_int_equal(auth_pool_allowed(e->pool, 5000), 1);
}

static void *stop_pool(void *arg)
{
	auth_pool_stop(arg);
	return NULL;
}

static void stop_answers_checks_held_back(void **state)
{
	struct env *e = env_new(2, 1);

	(void)state;
	auth_pool_note_relaying(e->pool, now_ms() + FAR_MS);
	submit(e, 3);
	assert_true(wait_for(&fake.entered, 1, WAIT_MS));
	/* The two held back are answered "try later" at once, not after the
	 * relaying window; the running one finishes. */
	assert_int_equal(pthread_create(&e->stopper, NULL, stop_pool, e->pool), 0);
	e->stopping = true;
	assert_true(wait_for(&fake.done[AUTH_TEMPFAIL], 2, AUTH_RELAYING_MS / 2));
	assert_int_equal(get(&fake.entered), 1);
	release(1);
	finish(3);
	assert_int_equal(get(&fake.done[AUTH_OK]), 1);
	assert_int_equal(get(&fake.done[AUTH_TEMPFAIL]), 2);
}

/* Polls: nothing announces the unmap. */
static bool wait_released(unsigned long want, unsigned ms)
{
	uint64_t until = now_ms() + ms;

	while (hash_memory_released() < want && now_ms() < until)
		(void)wait_for(&fake.n_done, UINT_MAX, 1);
	return hash_memory_released() >= want;
}

static void checks_back_to_back_share_memory_a_waiting_thread_frees_it(void **state)
{
	struct env *e = env_new(1, 1);
	size_t pages = REGION_BYTES / (size_t)sysconf(_SC_PAGESIZE);
	unsigned long released_before = hash_memory_released();
	long faults[2];

	(void)state;
	pthread_mutex_lock(&fake.lock);
	fake.use_memory = true;
	pthread_mutex_unlock(&fake.lock);
	/* The first check has used its memory and waits; the second is queued
	 * behind it on the one thread. */
	submit(e, 2);
	assert_true(wait_for(&fake.entered, 1, WAIT_MS));
	finish(2);
	/* Copied out: a failed assertion must not leave the lock held. */
	pthread_mutex_lock(&fake.lock);
	memcpy(faults, fake.faults, sizeof(faults));
	pthread_mutex_unlock(&fake.lock);
	assert_true(faults[0] >= (long)pages);
	assert_true(faults[1] < (long)pages / 4);
	/* Nothing queued: the thread gives the memory back before it waits. */
	assert_true(wait_released(released_before + 1, WAIT_MS));
}

/* A check reads the credentials in force when it starts, not when it was
 * queued: a reload between the two is seen. */
static void a_check_uses_what_is_in_force_when_it_starts(void **state)
{
	struct env *e = env_new(1, 1);
	struct credentials *renewed = creds_with("secret");

	(void)state;
	submit(e, 2);
	assert_true(wait_for(&fake.entered, 1, WAIT_MS));
	/* The second waits behind the first; now a reload lands (same entry for
	 * alice: no check is made twice). */
	credentials_slot_set(e->slot, renewed);
	finish(2);
	assert_int_equal(get(&fake.entered), 2);
	assert_ptr_not_equal(fake.seen[0], renewed);
	assert_ptr_equal(fake.seen[1], renewed);
	credentials_unref(renewed);
}

/* A reload that changes the user's password while the check runs: the answer
 * of the old entry does not hold, the check is made again on the new one. */
static void a_password_changed_during_the_check_is_checked_again(void **state)
{
	struct env *e = env_new(1, 1);
	struct credentials *changed = creds_with("another");

	(void)state;
	submit(e, 1);
	assert_true(wait_for(&fake.entered, 1, WAIT_MS));
	credentials_slot_set(e->slot, changed);
	finish(1);
	assert_int_equal(get(&fake.entered), 2);
	assert_ptr_equal(fake.seen[1], changed);
	credentials_unref(changed);
}

/* The gateway is gone from the configuration: nothing is checked. */
static void no_credentials_in_force_no_check(void **state)
{
	struct env *e = env_new(1, 1);

	(void)state;
	credentials_slot_set(e->slot, NULL);
	submit(e, 1);
	finish(1);
	assert_int_equal(get(&fake.entered), 0);
	assert_int_equal(get(&fake.done[AUTH_NO_CREDENTIALS]), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(all_threads_check_while_nothing_relays, teardown),
		cmocka_unit_test_teardown(one_thread_fewer_while_sessions_relay, teardown),
		cmocka_unit_test_teardown(all_threads_again_when_relaying_stops, teardown),
		cmocka_unit_test_teardown(allowed_follows_the_window, teardown),
		cmocka_unit_test_teardown(stop_answers_checks_held_back, teardown),
		cmocka_unit_test_teardown(
			checks_back_to_back_share_memory_a_waiting_thread_frees_it, teardown),
		cmocka_unit_test_teardown(a_check_uses_what_is_in_force_when_it_starts, teardown),
		cmocka_unit_test_teardown(a_password_changed_during_the_check_is_checked_again,
					  teardown),
		cmocka_unit_test_teardown(no_credentials_in_force_no_check, teardown),
	};
	pthread_condattr_t attr;

	/* Page faults count pages: no transparent huge pages (THP "always"). */
	(void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&fake.cond, &attr);
	pthread_condattr_destroy(&attr);
	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
