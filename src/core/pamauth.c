/* pamauth: PAM transactions on a bounded pool of threads (see pamauth.h). */
#include "pamauth.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_appl.h>

/* The job's conversation, as the pool's lock guards it. */
enum {
	PJ_QUEUED = 0,
	PJ_RUNNING,   /* PAM works */
	PJ_ASKING,    /* a prompt was posted; the client's answer is awaited */
	PJ_ANSWERED,  /* the answer is in job->answer */
	PJ_CANCELLED, /* no answer will come: the session gave up, time ran out, a stop */
	PJ_DONE,      /* PAMAUTH_DONE is posted: the job is the session's again */
};

/* Transactions whose tails make the failure floor. */
#define PAMAUTH_TAILS 32

struct pamauth_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;    /* jobs queued, or stopping */
	pthread_cond_t changed; /* an answer, a cancel, an event delivered (CLOCK_MONOTONIC) */
	struct pamauth_job *head, *tail;
	unsigned queued, max_queue;
	bool stopping;
	unsigned n_threads;
	pthread_t *threads;
	uint64_t tails[PAMAUTH_TAILS]; /* the last transactions' tails, as answered, ms */
	unsigned next_tail, n_tails;
};

/* What pamauth_conv() gets back from PAM. */
struct pamauth_conv_ctx {
	struct pamauth_pool *pool;
	struct pamauth_job *job;
	uint64_t answered_ms; /* when the last answer came in: a tail starts there */
};

static uint64_t pamauth_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pamauth_abs_time(uint64_t ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ms / 1000u);
	ts->tv_nsec = (long)(ms % 1000u) * 1000000L;
}

/* Runs on the session's loop. A DONE event hands the job back: the session
 * may free it in event(). */
static void pamauth_deliver(struct loop_task *t)
{
	struct pamauth_job *job = t->arg;
	struct pamauth_pool *pool = job->pool;
	enum pamauth_event ev;

	pthread_mutex_lock(&pool->lock);
	ev = job->last;
	job->in_flight = false;
	pthread_cond_broadcast(&pool->changed);
	pthread_mutex_unlock(&pool->lock);
	job->event(job, ev);
}

/* Posts ev once the previous event has been delivered: the job has one task
 * (lock held). */
static void pamauth_post(struct pamauth_pool *pool, struct pamauth_job *job, enum pamauth_event ev)
{
	while (job->in_flight)
		pthread_cond_wait(&pool->changed, &pool->lock);
	job->last = ev;
	job->in_flight = true;
	loop_post(job->reply_loop, &job->task, pamauth_deliver, job);
}

/* Appends text for the client (lock held). A cut is marked, not silent. */
static void pamauth_text(struct pamauth_job *job, const char *s, bool newline)
{
	size_t used = strlen(job->text), room = sizeof(job->text) - used;
	int n = snprintf(job->text + used, room, "%s%s", s != NULL ? s : "", newline ? "\n" : "");

	if (n < 0 || (size_t)n >= room)
		memcpy(job->text + sizeof(job->text) - 5, "...\n", 5);
}

/* Hands one prompt to the session and waits for the answer, the deadline, a
 * cancel or a stop. Returns the answer (malloc'd, PAM frees it) or NULL. */
static char *pamauth_ask(struct pamauth_conv_ctx *cx, const char *prompt, bool echo)
{
	struct pamauth_pool *pool = cx->pool;
	struct pamauth_job *job = cx->job;
	struct timespec until;
	char *reply = NULL;

	pamauth_abs_time(job->deadline_ms, &until);
	pthread_mutex_lock(&pool->lock);
	if (job->state != PJ_RUNNING || job->cancelled || pool->stopping) {
		pthread_mutex_unlock(&pool->lock);
		return NULL;
	}
	job->prompt_at = strlen(job->text);
	pamauth_text(job, prompt, false);
	job->echo = echo;
	job->state = PJ_ASKING;
	pamauth_post(pool, job, PAMAUTH_PROMPT);
	while (job->state == PJ_ASKING && !pool->stopping && pamauth_clock_ms() < job->deadline_ms)
		(void)pthread_cond_timedwait(&pool->changed, &pool->lock, &until);
	if (job->state == PJ_ANSWERED) {
		reply = strdup(job->answer);
		explicit_bzero(job->answer, sizeof(job->answer));
		job->state = reply != NULL ? PJ_RUNNING : PJ_CANCELLED;
		/* The prompt and what came with it are shown: start afresh. */
		job->text[0] = '\0';
		cx->answered_ms = pamauth_clock_ms();
	} else {
		job->state = PJ_CANCELLED;
	}
	pthread_mutex_unlock(&pool->lock);
	return reply;
}

static int pamauth_conv(int n, const struct pam_message **msg, struct pam_response **resp,
			void *appdata)
{
	struct pamauth_conv_ctx *cx = appdata;
	struct pam_response *r;

	if (n <= 0 || n > PAM_MAX_NUM_MSG)
		return PAM_CONV_ERR;
	r = calloc((size_t)n, sizeof(*r));
	if (r == NULL)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++) {
		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
		case PAM_PROMPT_ECHO_ON:
			r[i].resp = pamauth_ask(cx, msg[i]->msg,
						msg[i]->msg_style == PAM_PROMPT_ECHO_ON);
			if (r[i].resp == NULL)
				goto fail;
			break;
		case PAM_ERROR_MSG:
		case PAM_TEXT_INFO:
			pthread_mutex_lock(&cx->pool->lock);
			if (cx->job->state == PJ_RUNNING)
				pamauth_text(cx->job, msg[i]->msg, true);
			pthread_mutex_unlock(&cx->pool->lock);
			break;
		default: /* binary prompts: no line client can answer them */
			goto fail;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
fail:
	for (int i = 0; i < n; i++) {
		if (r[i].resp != NULL) {
			explicit_bzero(r[i].resp, strlen(r[i].resp));
			free(r[i].resp);
		}
	}
	free(r);
	return PAM_CONV_ERR;
}

/* PAM_FAIL_DELAY: sockgate's failure_delay answers failures, on the loop's
 * timer; no thread of this pool sleeps. */
static void pamauth_no_delay(int retval, unsigned usec, void *appdata)
{
	(void)retval;
	(void)usec;
	(void)appdata;
}

/* The directory's groups of user, by NSS (sssd, files), for targets that
 * name groups: "a,b", cut at len. Blocking, as PAM is: on this thread. */
static void pamauth_groups(const char *user, char *out, size_t len)
{
	struct passwd pw, *found = NULL;
	char buf[4096], gbuf[4096];
	gid_t gids[64];
	int n = 64;

	out[0] = '\0';
	if (getpwnam_r(user, &pw, buf, sizeof(buf), &found) != 0 || found == NULL)
		return;
	if (getgrouplist(user, pw.pw_gid, gids, &n) < 0)
		n = 64; /* more than 64: the first 64 */
	for (int i = 0; i < n; i++) {
		struct group gr, *g = NULL;
		size_t used = strlen(out);

		if (getgrgid_r(gids[i], &gr, gbuf, sizeof(gbuf), &g) != 0 || g == NULL)
			continue;
		snprintf(out + used, len - used, "%s%s", used > 0 ? "," : "", g->gr_name);
	}
}

static void pamauth_run(struct pamauth_pool *pool, struct pamauth_job *job)
{
	struct pamauth_conv_ctx cx = {.pool = pool, .job = job, .answered_ms = pamauth_clock_ms()};
	struct pam_conv conv = {.conv = pamauth_conv, .appdata_ptr = &cx};
	pam_handle_t *h = NULL;
	const void *item = NULL;
	int rc, state;

	rc = job->config_dir != NULL
		     ? pam_start_confdir(job->service, job->user, &conv, job->config_dir, &h)
		     : pam_start(job->service, job->user, &conv, &h);
	if (rc != PAM_SUCCESS) {
		job->result = PAMAUTH_ERROR;
		job->denial = "PAM could not start the service";
		return;
	}
	if (job->rhost[0] != '\0')
		(void)pam_set_item(h, PAM_RHOST, job->rhost);
	(void)pam_set_item(h, PAM_FAIL_DELAY, (const void *)pamauth_no_delay);
	rc = pam_authenticate(h, PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == PAM_SUCCESS) {
		rc = pam_acct_mgmt(h, PAM_DISALLOW_NULL_AUTHTOK);
		switch (rc) {
		case PAM_SUCCESS:
			job->result = PAMAUTH_OK;
			if (pam_get_item(h, PAM_USER, &item) == PAM_SUCCESS && item != NULL)
				snprintf(job->pam_user, sizeof(job->pam_user), "%s",
					 (const char *)item);
			pamauth_groups(job->pam_user[0] != '\0' ? job->pam_user : job->user,
				       job->groups, sizeof(job->groups));
			break;
		case PAM_NEW_AUTHTOK_REQD:
			job->result = PAMAUTH_CHANGE_PASSWORD;
			job->denial = "password change required";
			break;
		case PAM_ACCT_EXPIRED:
			job->result = PAMAUTH_DENIED;
			job->denial = "account expired";
			break;
		default:
			job->result = PAMAUTH_DENIED;
			job->denial = "account refused by PAM";
			break;
		}
	} else {
		switch (rc) {
		case PAM_AUTH_ERR:
		case PAM_USER_UNKNOWN:
		case PAM_CRED_INSUFFICIENT:
		case PAM_MAXTRIES:
		case PAM_PERM_DENIED:
			job->result = PAMAUTH_DENIED;
			job->denial = "bad credentials";
			break;
		case PAM_AUTHINFO_UNAVAIL:
			job->result = PAMAUTH_ERROR;
			job->denial = "the authentication service is unavailable";
			break;
		default:
			job->result = PAMAUTH_ERROR;
			job->denial = "PAM failed";
			break;
		}
	}
	pthread_mutex_lock(&pool->lock);
	state = job->state;
	if (job->cancelled)
		state = PJ_CANCELLED;
	pthread_mutex_unlock(&pool->lock);
	if (state == PJ_CANCELLED) {
		job->result = PAMAUTH_CANCELLED;
		job->denial = "the client gave no answer in time";
	}
	job->tail_ms = pamauth_clock_ms() - cx.answered_ms;
	pam_end(h, rc);
}

static int pamauth_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The median of the recent tails (lock held): what a real check costs now. */
static uint64_t pamauth_floor_locked(const struct pamauth_pool *pool)
{
	uint64_t v[PAMAUTH_TAILS];

	if (pool->n_tails == 0)
		return 0;
	memcpy(v, pool->tails, pool->n_tails * sizeof(v[0]));
	qsort(v, pool->n_tails, sizeof(v[0]), pamauth_cmp_u64);
	return v[pool->n_tails / 2];
}

static void *pamauth_thread(void *arg)
{
	struct pamauth_pool *pool = arg;

	pthread_setname_np(pthread_self(), "sockgate-pam");
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct pamauth_job *job;

		while (pool->head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->work, &pool->lock);
		job = pool->head;
		if (job == NULL)
			break;
		pool->head = job->next;
		if (pool->head == NULL)
			pool->tail = NULL;
		pool->queued--;
		if (pool->stopping || job->cancelled) {
			job->result = PAMAUTH_CANCELLED;
			job->denial = pool->stopping ? "shutting down" : "the client left";
		} else {
			job->state = PJ_RUNNING;
			pthread_mutex_unlock(&pool->lock);
			pamauth_run(pool, job);
			pthread_mutex_lock(&pool->lock);
		}
		/* Only transactions that judged a login say what a check costs,
		 * and each as the client saw it: padded to the floor. So a flood
		 * of unknown users (fast) cannot drag the floor down. */
		if (job->result == PAMAUTH_OK || job->result == PAMAUTH_DENIED) {
			uint64_t floor = pamauth_floor_locked(pool);

			pool->tails[pool->next_tail] = job->tail_ms > floor ? job->tail_ms : floor;
			pool->next_tail = (pool->next_tail + 1) % PAMAUTH_TAILS;
			if (pool->n_tails < PAMAUTH_TAILS)
				pool->n_tails++;
		}
		job->state = PJ_DONE;
		pamauth_post(pool, job, PAMAUTH_DONE);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

struct pamauth_pool *pamauth_pool_create(const struct pamauth_pool_settings *set,
					 struct errbuf *err)
{
	struct pamauth_pool *pool = calloc(1, sizeof(*pool));
	pthread_condattr_t attr;
	sigset_t all, old;

	if (pool == NULL || set->threads == 0) {
		free(pool);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	pool->threads = calloc(set->threads, sizeof(*pool->threads));
	if (pool->threads == NULL) {
		free(pool);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	pool->max_queue = set->max_queue;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->work, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->changed, &attr);
	pthread_condattr_destroy(&attr);
	/* Signals belong to the main thread's signalfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; pool->n_threads < set->threads; pool->n_threads++) {
		int rc =
			pthread_create(&pool->threads[pool->n_threads], NULL, pamauth_thread, pool);

		if (rc != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			errbuf_errno(err, rc, "cannot start a PAM thread");
			pamauth_pool_free(pool);
			return NULL;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pool;
}

int pamauth_submit(struct pamauth_pool *pool, struct pamauth_job *job)
{
	int rc = -1;

	job->pool = pool;
	job->next = NULL;
	job->state = PJ_QUEUED;
	job->in_flight = false;
	job->cancelled = false;
	job->text[0] = '\0';
	job->prompt_at = 0;
	job->pam_user[0] = '\0';
	job->denial = NULL;
	pthread_mutex_lock(&pool->lock);
	if (!pool->stopping && pool->queued < pool->max_queue) {
		if (pool->tail != NULL)
			pool->tail->next = job;
		else
			pool->head = job;
		pool->tail = job;
		pool->queued++;
		pthread_cond_signal(&pool->work);
		rc = 0;
	}
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

void pamauth_answer(struct pamauth_pool *pool, struct pamauth_job *job, const char *line,
		    size_t len)
{
	size_t kept = len < sizeof(job->answer) - 1 ? len : sizeof(job->answer) - 1;

	pthread_mutex_lock(&pool->lock);
	if (job->state == PJ_ASKING) {
		memcpy(job->answer, line, kept);
		job->answer[kept] = '\0';
		job->state = PJ_ANSWERED;
		pthread_cond_broadcast(&pool->changed);
	}
	pthread_mutex_unlock(&pool->lock);
}

void pamauth_cancel(struct pamauth_pool *pool, struct pamauth_job *job)
{
	pthread_mutex_lock(&pool->lock);
	job->cancelled = true;
	if (job->state == PJ_ASKING || job->state == PJ_ANSWERED) {
		job->state = PJ_CANCELLED;
		explicit_bzero(job->answer, sizeof(job->answer));
	}
	pthread_cond_broadcast(&pool->changed);
	pthread_mutex_unlock(&pool->lock);
}

uint64_t pamauth_failure_floor_ms(struct pamauth_pool *pool)
{
	uint64_t floor;

	pthread_mutex_lock(&pool->lock);
	floor = pamauth_floor_locked(pool);
	pthread_mutex_unlock(&pool->lock);
	return floor;
}

void pamauth_pool_stop(struct pamauth_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->work);
	pthread_cond_broadcast(&pool->changed);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->n_threads; i++)
		pthread_join(pool->threads[i], NULL);
	pool->n_threads = 0;
}

void pamauth_pool_free(struct pamauth_pool *pool)
{
	if (pool == NULL)
		return;
	pamauth_pool_stop(pool);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->work);
	pthread_cond_destroy(&pool->changed);
	free(pool->threads);
	free(pool);
}
