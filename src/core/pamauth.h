/* pamauth: logins through PAM (directory accounts: SSSD, LDAP, Kerberos;
 * pam_oath for a second factor), with PAM's conversation as the dialogue. PAM
 * calls block, so each transaction runs on a thread of a bounded pool; when a
 * module asks something, the thread hands the prompt to the session's loop
 * and waits for the client's answer, never past the login's deadline. PAM's
 * own failure delay is replaced by sockgate's (no thread sleeps), and the
 * time a failure takes after the client's last answer is padded to what the
 * recent transactions took, so an unknown user (which a module may answer in
 * 0.2 ms) looks like a wrong password (14 ms of yescrypt). */
#ifndef SOCKGATE_PAMAUTH_H
#define SOCKGATE_PAMAUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "credentials.h"
#include "errbuf.h"
#include "loop.h"

#define PAMAUTH_MAX_TEXT   1024 /* prompt and info text handed to the client at once */
#define PAMAUTH_MAX_ANSWER 512  /* bytes of one answer kept (one more marks it overlong) */

struct pamauth_pool;

enum pamauth_event {
	PAMAUTH_PROMPT, /* show job->text, then job->prompt; answer with pamauth_answer() */
	PAMAUTH_DONE,   /* the transaction ended: job->result and job->text */
};

enum pamauth_result {
	PAMAUTH_OK = 0,
	PAMAUTH_DENIED,          /* a failed login: job->denial says why, for the log */
	PAMAUTH_CHANGE_PASSWORD, /* right password, but PAM wants it changed */
	PAMAUTH_ERROR,           /* PAM itself failed (job->denial says how) */
	PAMAUTH_CANCELLED,       /* the session gave up (pamauth_cancel, deadline, stop) */
};

struct pamauth_job;
typedef void pamauth_event_fn(struct pamauth_job *job, enum pamauth_event ev);

/* Owned by the session; the pool uses it until it posts PAMAUTH_DONE. Fill
 * the inputs before pamauth_submit(). */
struct pamauth_job {
	struct loop_task task; /* how events reach reply_loop */
	struct pamauth_job *next;
	struct loop *reply_loop;
	pamauth_event_fn *event; /* runs on reply_loop */
	void *arg;
	/* inputs */
	const char *service;    /* lives as long as the job (the gateway's config) */
	const char *config_dir; /* NULL: PAM's own */
	char user[CREDENTIALS_MAX_USER + 1];
	char rhost[80];       /* NET_ADDRSTRLEN */
	uint64_t deadline_ms; /* loop_clock_ms(): no answer is awaited past it */
	/* the pool's side, read on reply_loop when an event arrives */
	enum pamauth_event last;
	enum pamauth_result result;
	const char *denial;                      /* "bad credentials", "account expired", ... */
	char text[PAMAUTH_MAX_TEXT];             /* info and error lines, then the prompt */
	size_t prompt_at;                        /* where the prompt starts in text */
	bool echo;                               /* the prompt's answer may be shown */
	char pam_user[CREDENTIALS_MAX_USER + 1]; /* PAM_USER at the end (modules may map it) */
	char groups[1024]; /* on success: the user's groups by NSS, "a,b" (targets) */
	uint64_t tail_ms;  /* from the last answer to the end: what a client can time */
	/* private: the pool's lock guards them */
	struct pamauth_pool *pool;
	int state;
	bool in_flight; /* an event is posted and not yet delivered */
	bool cancelled; /* the session gave up */
	char answer[PAMAUTH_MAX_ANSWER + 2];
};

struct pamauth_pool_settings {
	unsigned threads;   /* transactions at once */
	unsigned max_queue; /* jobs waiting for a thread */
};

struct pamauth_pool *pamauth_pool_create(const struct pamauth_pool_settings *set,
					 struct errbuf *err);

/* Queues job. Returns 0, or -1 (queue full, stopping); then nothing happens. */
int pamauth_submit(struct pamauth_pool *pool, struct pamauth_job *job);

/* The client's answer to the PAMAUTH_PROMPT just delivered (len bytes; the
 * caller wipes its copy). */
void pamauth_answer(struct pamauth_pool *pool, struct pamauth_job *job, const char *line,
		    size_t len);

/* The session gives up (closed, out of time): the conversation ends and PAM
 * fails; PAMAUTH_DONE still comes. */
void pamauth_cancel(struct pamauth_pool *pool, struct pamauth_job *job);

/* How long a failure should take after the client's last answer: the median
 * of the recent transactions' tails, each counted as padded. */
uint64_t pamauth_failure_floor_ms(struct pamauth_pool *pool);

/* Stops the threads: waiting conversations are cancelled, queued jobs end
 * PAMAUTH_CANCELLED; every job is posted back before this returns. */
void pamauth_pool_stop(struct pamauth_pool *pool);
void pamauth_pool_free(struct pamauth_pool *pool);

#endif
