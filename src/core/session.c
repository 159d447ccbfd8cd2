/* session: the per-connection state machine (see session.h). Login input is
 * parsed by line.c, passwords are checked by auth.c off the loop, bytes are moved
 * by relay.c; this file decides what happens next. */
#include "session.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "line.h"
#include "log.h"
#include "net.h"
#include "relay.h"

/* Bytes one session may relay per wakeup before letting others run. */
#define SESSION_RELAY_BUDGET (1u << 20)
/* A closing session waits this long for the client to read its last message
 * and hang up, so the message is not lost to a reset. */
#define SESSION_LINGER_MS    2000
#define SESSION_LINGER_READS 16
/* Output queued during login is small (prompts, messages): input is not read
 * while more than this waits for the client. */
#define SESSION_LOGIN_OUT_MAX 4096
/* Login input read per wakeup before the session lets the others of its
 * worker run, as the relay does with SESSION_RELAY_BUDGET: a client that keeps
 * sending must not keep the loop from its other sessions and its timers. */
#define SESSION_LOGIN_BUDGET (16u << 10)

#define SESSION_EVENTS       (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET)

/* Only while logging in: the line buffer and the password-check job. */
struct login {
	struct line_reader in;
	unsigned failures;
	unsigned empty_lines;    /* at the username prompt */
	struct loop_timer delay; /* the pause before a failure answer */
	struct auth_job job;
};

struct session {
	struct loop_task task; /* hand-over, yield, deferred free: one at a time */
	struct session *prev, *next;
	struct worker *worker;
	struct gateway *gw;
	struct login *login;
	char *user; /* once authenticated */
	struct loop_io client, upstream;
	struct loop_timer timer; /* grace time, connect timeout, idle, linger */
	struct relay_dir up;     /* client -> upstream */
	struct relay_dir down;   /* upstream -> client; also login output */
	uint64_t started_ms, active_ms;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer;
	const char *close_reason;
	unsigned holds; /* queued task or running password check: not freed yet */
	unsigned short upstream_idx;
	unsigned short linger_reads;
	enum session_state state : 8;
	/* Edge-triggered readiness of each socket; *_drain: read it until EAGAIN
	 * (a hang-up or urgent data was reported, see relay_pump). */
	bool c_rd, c_wr, c_drain;
	bool u_rd, u_wr, u_drain;
	bool counted_login;
	bool connected;         /* the upstream accepted */
	uint32_t source_ticket; /* in the penalty table's per-source login count */
};

static void session_client_cb(struct loop_io *io, uint32_t events);
static void session_upstream_cb(struct loop_io *io, uint32_t events);
static void session_login_input(struct session *s);
static void session_connect_next(struct session *s);
static void session_relay(struct session *s);
static void session_close(struct session *s, const char *reason);
static void session_penalise(struct session *s, enum penalty_event ev, const char *why);
static void session_login_abandoned(struct session *s, const char *why);
static void session_yield(struct session *s);
static bool session_logging_in(const struct session *s);

const char *session_state_name(enum session_state st)
{
	static const char *const names[] = {
		[SESSION_NEW] = "new",
		[SESSION_USERNAME] = "username",
		[SESSION_PASSWORD] = "password",
		[SESSION_VERIFYING] = "verifying",
		[SESSION_CONNECTING] = "connecting",
		[SESSION_RELAYING] = "relaying",
		[SESSION_DRAINING] = "draining",
		[SESSION_CLOSED] = "closed",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

static struct loop *session_loop(const struct session *s)
{
	return s->worker->loop;
}

static const struct config_gateway *session_cfg(const struct session *s)
{
	return s->gw->cfg;
}

/* ---- lifetime ---------------------------------------------------------- */

struct session *session_create(struct gateway *gw, int fd, const struct sockaddr *peer,
			       socklen_t peerlen)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->gw = gw;
	s->client.fd = fd;
	s->upstream.fd = -1;
	if (peerlen > sizeof(s->peer))
		peerlen = sizeof(s->peer);
	memcpy(&s->peer, peer, peerlen);
	return s;
}

static void session_free(struct session *s)
{
	if (s->login != NULL) {
		explicit_bzero(s->login, sizeof(*s->login));
		free(s->login);
	}
	free(s->user);
	gateway_unref(s->gw);
	free(s);
}

static void session_free_task(struct loop_task *t)
{
	session_free(t->arg);
}

/* Drops one hold; a closed session with none left is freed after the batch
 * (a later event of the same batch may still name it). */
static void session_release(struct session *s)
{
	if (--s->holds == 0 && s->state == SESSION_CLOSED) {
		s->holds++;
		loop_defer(session_loop(s), &s->task, session_free_task, s);
	}
}

static void session_enter(struct session *s, enum session_state st)
{
	bool was_login = s->state < SESSION_RELAYING;
	bool is_login = st < SESSION_RELAYING;

	if (s->counted_login && was_login && !is_login) {
		__atomic_sub_fetch(&s->worker->logging_in, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&s->gw->counters->logging_in, 1, __ATOMIC_RELAXED);
		s->counted_login = false;
	}
	if (s->source_ticket != 0 && !is_login) {
		penalty_login_done(s->worker->penalties, &s->peer.sa, s->source_ticket);
		s->source_ticket = 0;
	}
	s->state = st;
}

static void session_log_fields(const struct session *s, char *addr, char *port, size_t addrlen)
{
	net_format_host(&s->peer.sa, addr, addrlen);
	snprintf(port, 8, "%u", net_sockaddr_port(&s->peer.sa));
}

static const char *session_upstream_text(const struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);

	if (s->state < SESSION_CONNECTING || s->upstream_idx >= cfg->n_upstream)
		return NULL;
	return cfg->upstream[s->upstream_idx].text;
}

/* Whether a line about s, a session that never logged in (and never relayed),
 * may be written in full: a flood of such sessions is summarised per source
 * (lograte). */
static bool session_log_unauthenticated(const struct session *s, enum lograte_kind kind)
{
	struct lograte *lr = s->worker->lograte;

	return lr == NULL || lograte_admit(lr, &s->peer.sa, kind, loop_now_ms(session_loop(s)));
}

static void session_log_closed(const struct session *s, const char *reason)
{
	char addr[NET_ADDRSTRLEN], port[8], in[24], out[24], dur[24];

	if (s->user == NULL && !s->connected && !session_log_unauthenticated(s, LOGRATE_CLOSED))
		return;
	session_log_fields(s, addr, port, sizeof(addr));
	snprintf(in, sizeof(in), "%llu", (unsigned long long)s->up.bytes);
	snprintf(out, sizeof(out), "%llu", (unsigned long long)s->down.bytes);
	snprintf(dur, sizeof(dur), "%llu",
		 (unsigned long long)(loop_now_ms(session_loop(s)) - s->started_ms));
	log_event(LOG_INFO, LOG_EV_SESSION_CLOSED, "session closed",
		  LOG_FIELDS({"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
			     {"SOCKGATE_GATEWAY", session_cfg(s)->name}, {"SOCKGATE_USER", s->user},
			     {"UPSTREAM", s->connected ? session_upstream_text(s) : NULL},
			     {"SOCKGATE_STATE", session_state_name(s->state)}, {"REASON", reason},
			     {"BYTES_IN", in}, {"BYTES_OUT", out}, {"DURATION_MS", dur}));
}

static void session_close_fd(struct session *s, struct loop_io *io)
{
	int fd = io->fd;

	if (fd < 0)
		return;
	loop_io_del(session_loop(s), io);
	close(fd);
}

/* The one way a session ends. */
static void session_close(struct session *s, const char *reason)
{
	struct worker *w = s->worker;

	if (s->state == SESSION_CLOSED)
		return;
	/* The slot is free before the line saying so is written: whoever reads
	 * the log may connect again at once. */
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		w->list = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	__atomic_sub_fetch(&w->sessions, 1, __ATOMIC_RELAXED);
	gateway_session_end(s->gw);
	session_log_closed(s, reason);
	session_enter(s, SESSION_CLOSED);
	loop_timer_disarm(w->loop, &s->timer);
	session_close_fd(s, &s->client);
	session_close_fd(s, &s->upstream);
	relay_dir_release(&s->up);
	relay_dir_release(&s->down);
	if (s->login != NULL) {
		loop_timer_disarm(w->loop, &s->login->delay);
		line_wipe(&s->login->in);
	}
	s->holds++;
	session_release(s);
}

/* ---- output to the client ---------------------------------------------- */

/* Queues text for the client; session_login_input() writes what a batch of
 * login input produced in one go. */
static int session_queue(struct session *s, const char *text)
{
	return relay_queue(&s->down, text, strlen(text));
}

/* Queues text for the client and writes what it takes now. */
static int session_send(struct session *s, const char *text)
{
	if (relay_queue(&s->down, text, strlen(text)) < 0)
		return -1;
	if (relay_flush(&s->down, s->client.fd, &s->c_wr) < 0)
		return -1;
	return 0;
}

/* The client's socket reported a hang-up or an error before relaying began:
 * nobody is left to answer. The socket's error says which. */
static void session_client_gone(struct session *s)
{
	int e = 0;
	socklen_t len = sizeof(e);
	const char *why;

	(void)getsockopt(s->client.fd, SOL_SOCKET, SO_ERROR, &e, &len);
	why = e == ETIMEDOUT ? "client timed out during login" : "client reset during login";
	session_login_abandoned(s, why);
	session_close(s, why);
}

/* A write to the client failed (session_send, relay_flush): says why, from
 * errno, in the words the relay uses for the same failures. */
static void session_client_write_failed(struct session *s)
{
	bool login = s->state != SESSION_RELAYING;

	if (errno == ECONNRESET || errno == EPIPE) {
		session_login_abandoned(s, "client reset during login");
		session_close(s, login ? "client reset during login" : "client reset");
	} else if (errno == ENOMEM)
		session_close(s, "out of memory");
	else
		session_close(s, "client write error");
}

static void session_linger_timeout(struct loop_timer *t)
{
	struct session *s = t->arg;

	session_close(s, s->close_reason);
}

/* Ends the session after a last message: the message is written, the client is
 * told EOF, and its input is read and dropped until it hangs up (or a short
 * time passes), so the message is not destroyed by a reset. */
static void session_finish(struct session *s, const char *message, const char *reason)
{
	s->close_reason = reason;
	session_close_fd(s, &s->upstream);
	relay_dir_release(&s->up);
	if (s->login != NULL) {
		loop_timer_disarm(session_loop(s), &s->login->delay);
		line_wipe(&s->login->in);
	}
	session_enter(s, SESSION_DRAINING);
	if (message != NULL && session_send(s, message) < 0) {
		session_close(s, reason);
		return;
	}
	if (loop_timer_arm(session_loop(s), &s->timer, SESSION_LINGER_MS, session_linger_timeout,
			   s) < 0) {
		session_close(s, reason);
		return;
	}
	session_client_cb(&s->client, 0);
}

static void session_drain(struct session *s)
{
	char buf[4096];

	if (s->down.len > 0) {
		int r = relay_flush(&s->down, s->client.fd, &s->c_wr);

		if (r < 0) {
			session_close(s, s->close_reason);
			return;
		}
		if (r > 0)
			return;
	}
	if (!s->down.shut) {
		shutdown(s->client.fd, SHUT_WR);
		s->down.shut = true;
	}
	while (s->c_rd) {
		ssize_t n = recv(s->client.fd, buf, sizeof(buf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			s->c_rd = false;
			break;
		}
		if (n <= 0 || ++s->linger_reads > SESSION_LINGER_READS) {
			session_close(s, s->close_reason);
			break;
		}
	}
	/* What a client sends while we hang up may be more passwords. */
	explicit_bzero(buf, sizeof(buf));
}

/* ---- login ------------------------------------------------------------- */

static void session_grace_timeout(struct loop_timer *t)
{
	struct session *s = t->arg;

	session_penalise(s, PENALTY_GRACE, "login grace time expired");
	session_finish(s, "\nLogin timed out.\n", "login grace time expired");
}

static void session_start_task(struct loop_task *t)
{
	struct session *s = t->arg;
	struct worker *w = s->worker;
	const struct config_gateway *cfg = session_cfg(s);
	int fd = s->client.fd;

	s->holds--;
	s->started_ms = s->active_ms = loop_now_ms(w->loop);
	s->next = w->list;
	if (s->next != NULL)
		s->next->prev = s;
	w->list = s;
	s->state = SESSION_NEW;
	s->client.fd = -1;
	s->c_wr = true;
	/* Prompts are small writes that must not wait for Nagle; urgent data
	 * (telnet's Interrupt) is relayed in line, not dropped. */
	(void)net_set_nodelay(fd);
	(void)net_set_oobinline(fd);
	if (loop_io_add(w->loop, &s->client, fd, SESSION_EVENTS, session_client_cb, s) < 0) {
		close(fd);
		session_close(s, "cannot register socket");
		return;
	}
	if (!cfg->authenticate) {
		/* A plain relay: straight to the upstream. */
		session_enter(s, SESSION_CONNECTING);
		session_connect_next(s);
		return;
	}
	s->login = calloc(1, sizeof(*s->login));
	if (s->login == NULL) {
		session_close(s, "out of memory");
		return;
	}
	if (cfg->login.grace_time_ms > 0 &&
	    loop_timer_arm(w->loop, &s->timer, cfg->login.grace_time_ms, session_grace_timeout, s) <
		    0) {
		session_close(s, "out of memory");
		return;
	}
	session_enter(s, SESSION_USERNAME);
	if (session_send(s, cfg->login.username_prompt) < 0) {
		session_client_write_failed(s);
		return;
	}
}

void session_start(struct session *s, struct worker *w, uint32_t source_ticket)
{
	s->worker = w;
	s->holds = 1;
	s->source_ticket = source_ticket;
	/* Counted here, on the accepting thread, so the next accept already sees
	 * this connection in the start-up limits. */
	s->counted_login = true;
	__atomic_add_fetch(&w->sessions, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&w->logging_in, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->gw->counters->logging_in, 1, __ATOMIC_RELAXED);
	loop_post(w->loop, &s->task, session_start_task, s);
}

static void session_log_login(const struct session *s, enum log_event ev, const char *user,
			      const char *reason)
{
	char addr[NET_ADDRSTRLEN], port[8], attempt[12];

	session_log_fields(s, addr, port, sizeof(addr));
	snprintf(attempt, sizeof(attempt), "%u",
		 s->login != NULL ? s->login->failures + (ev == LOG_EV_LOGIN_OK) : 0);
	log_event(ev == LOG_EV_LOGIN_OK ? LOG_INFO : LOG_WARNING, ev,
		  ev == LOG_EV_LOGIN_OK ? "login ok" : "login failed",
		  /* The address first: a filter (fail2ban) anchors on it, and what a
		   * client typed as its user name can then never pose as it. */
		  LOG_FIELDS({"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
			     {"SOCKGATE_GATEWAY", session_cfg(s)->name}, {"SOCKGATE_USER", user},
			     {"SOCKGATE_ATTEMPT", attempt}, {"REASON", reason}));
}

/* Adds a penalty to the client's source; logs when that starts a refusal. */
static void session_penalise(struct session *s, enum penalty_event ev, const char *why)
{
	struct penalty_table *pt = s->worker->penalties;
	uint64_t now = loop_now_ms(session_loop(s)), until;
	char addr[NET_ADDRSTRLEN], port[8], source[NET_ADDRSTRLEN + 8], dur[24];

	if (pt == NULL || !penalty_record(pt, &s->peer.sa, ev, now, &until))
		return;
	session_log_fields(s, addr, port, sizeof(addr));
	penalty_format_source(pt, &s->peer.sa, source, sizeof(source));
	snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(until - now));
	log_event(LOG_WARNING, LOG_EV_PENALTY, "source penalised",
		  LOG_FIELDS({"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
			     {"SOCKGATE_GATEWAY", session_cfg(s)->name},
			     {"SOCKGATE_SOURCE", source}, {"DURATION_MS", dur}, {"REASON", why}));
}

/* The client leaves, or is sent away, before its first attempt was answered:
 * OpenSSH's "noauth". Costs its source a little, so that one host opening and
 * dropping connections as fast as it can is soon refused at accept. */
static void session_login_abandoned(struct session *s, const char *why)
{
	if ((s->state == SESSION_USERNAME || s->state == SESSION_PASSWORD) && s->login != NULL &&
	    s->login->failures == 0)
		session_penalise(s, PENALTY_NOAUTH, why);
}

/* Answers a failed attempt: again the username prompt, or the end. */
static void session_answer_failure(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct login *login = s->login;

	if (login->failures >= cfg->login.max_attempts) {
		session_finish(s, cfg->login.failure_message, "too many failed logins");
		return;
	}
	memset(login->job.user, 0, sizeof(login->job.user));
	session_enter(s, SESSION_USERNAME);
	if (session_queue(s, cfg->login.failure_message) < 0 ||
	    session_queue(s, cfg->login.username_prompt) < 0) {
		session_close(s, "out of memory");
		return;
	}
	/* Writes the answer, with whatever the client sent meanwhile. */
	session_login_input(s);
}

static void session_failure_delay_done(struct loop_timer *t)
{
	struct session *s = t->arg;

	if (s->state == SESSION_VERIFYING)
		session_answer_failure(s);
}

/* A failure is answered after a random pause (half to one and a half times
 * failure_delay), which slows guessing and blurs any timing left. */
static void session_delay_failure(struct session *s)
{
	uint64_t d = session_cfg(s)->login.failure_delay_ms;
	uint32_t r = 0;

	if (d == 0) {
		session_answer_failure(s);
		return;
	}
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint32_t)loop_clock_ms() * 2654435761u;
	d = d / 2 + (d * (r % 1000u)) / 1000u;
	if (loop_timer_arm(session_loop(s), &s->login->delay, d, session_failure_delay_done, s) < 0)
		session_answer_failure(s);
}

static void session_auth_done(struct loop_task *t)
{
	struct session *s = t->arg;
	struct login *login = s->login;
	const char *early;
	size_t n;

	/* Closed or timed out (grace time) while the check ran: nobody waits for
	 * the answer, but a wrong password still counts against the source. */
	if (s->state != SESSION_VERIFYING) {
		if (login->job.result == AUTH_DENIED) {
			session_log_login(s, LOG_EV_LOGIN_FAILED, login->job.user,
					  "bad credentials (client gone)");
			session_penalise(s, PENALTY_AUTHFAIL, "failed login");
		}
		session_release(s);
		return;
	}
	s->holds--;
	switch (login->job.result) {
	case AUTH_OK:
		s->user = strdup(login->job.user);
		if (s->user == NULL) {
			session_close(s, "out of memory");
			return;
		}
		session_log_login(s, LOG_EV_LOGIN_OK, s->user, NULL);
		/* Bytes the client sent behind the password go to the upstream. */
		n = line_pending(&login->in, &early);
		if (n > 0 && relay_queue(&s->up, early, n) < 0) {
			session_close(s, "out of memory");
			return;
		}
		s->up.bytes += n;
		explicit_bzero(login, sizeof(*login));
		free(login);
		s->login = NULL;
		loop_timer_disarm(session_loop(s), &s->timer);
		session_enter(s, SESSION_CONNECTING);
		s->upstream_idx = 0;
		session_connect_next(s);
		return;
	case AUTH_DENIED:
	case AUTH_ERROR:
		/* A hash crypt cannot use answers as a wrong password would: the
		 * client must not learn that this user name exists. */
		login->failures++;
		session_log_login(s, LOG_EV_LOGIN_FAILED, login->job.user,
				  login->job.result == AUTH_DENIED
					  ? "bad credentials"
					  : "password check failed: the user's hash is unusable");
		session_penalise(s, PENALTY_AUTHFAIL, "failed login");
		session_delay_failure(s);
		return;
	case AUTH_NO_CREDENTIALS:
		session_finish(s, "Service unavailable.\n", "gateway removed by a reload");
		return;
	case AUTH_TEMPFAIL:
		break;
	}
	session_finish(s, "Service unavailable.\n", "password check failed");
}

static void session_on_password(struct session *s, char *line, size_t len)
{
	struct login *login = s->login;
	struct auth_job *job = &login->job;

	/* At most one byte past what is checked: enough for the check to see an
	 * overlong password as one. */
	size_t kept = len < sizeof(job->password) - 1 ? len : sizeof(job->password) - 1;

	memcpy(job->password, line, kept);
	job->password[kept] = '\0';
	explicit_bzero(line, len);
	job->slot = s->gw->counters->creds_now;
	job->reply_loop = session_loop(s);
	job->done = session_auth_done;
	job->arg = s;
	session_enter(s, SESSION_VERIFYING);
	if (auth_pool_submit(s->worker->auth, job) < 0) {
		explicit_bzero(job->password, sizeof(job->password));
		session_finish(s, "Service busy, try again later.\n", "password check queue full");
		return;
	}
	s->holds++;
}

/* Acts on one login line; what it answers is queued, not yet written. */
static void session_on_line(struct session *s, char *line, size_t len)
{
	const struct config_gateway *cfg = session_cfg(s);
	const char *prompt;

	if (s->state == SESSION_PASSWORD) {
		session_on_password(s, line, len);
		return;
	}
	if (len == 0) {
		/* An empty line asks again; it is no attempt, so it must not be
		 * free either: a few, then the connection ends. */
		if (++s->login->empty_lines > cfg->login.max_empty_lines) {
			session_login_abandoned(s, "too many empty login lines");
			session_finish(s, "\nToo many empty lines.\n",
				       "too many empty login lines");
			return;
		}
		prompt = cfg->login.username_prompt;
	} else {
		memcpy(s->login->job.user, line, len + 1);
		session_enter(s, SESSION_PASSWORD);
		prompt = cfg->login.password_prompt;
	}
	if (session_queue(s, prompt) < 0)
		session_close(s, "out of memory");
}

static bool session_logging_in(const struct session *s)
{
	return s->state == SESSION_USERNAME || s->state == SESSION_PASSWORD;
}

/* Reads and acts on login lines until input runs dry, the state moves on or
 * the wakeup's budget is spent (then the session yields and goes on after the
 * worker's other events and timers). The answers to everything read leave in
 * one write. */
static void session_login_input(struct session *s)
{
	size_t received = 0;

	while (session_logging_in(s)) {
		struct line_reader *in = &s->login->in;
		enum line_result r;
		char *line, *at;
		size_t len, room;
		ssize_t n;

		if (s->down.len > SESSION_LOGIN_OUT_MAX) {
			int w = relay_flush(&s->down, s->client.fd, &s->c_wr);

			if (w < 0) {
				session_client_write_failed(s);
				return;
			}
			if (w > 0)
				return; /* the client is not reading: wait for it */
		}
		r = line_take(in, &line, &len);
		if (r == LINE_OK) {
			session_on_line(s, line, len);
			continue;
		}
		if (r == LINE_TOO_LONG) {
			session_login_abandoned(s, "login line too long");
			session_finish(s, "\nInput line too long.\n", "login line too long");
			return;
		}
		if (r == LINE_BAD_CHAR) {
			session_login_abandoned(s, "control character in login input");
			session_finish(s, "\nInvalid character in input.\n",
				       "control character in login input");
			return;
		}
		if (!s->c_rd)
			break;
		if (received >= SESSION_LOGIN_BUDGET) {
			session_yield(s);
			break;
		}
		room = line_space(in, &at);
		n = recv(s->client.fd, at, room, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				s->c_rd = false;
				break;
			}
			session_login_abandoned(s, "client reset during login");
			session_close(s, "client reset during login");
			return;
		}
		if (n == 0) {
			session_login_abandoned(s, "client closed during login");
			session_close(s, "client closed during login");
			return;
		}
		received += (size_t)n;
		line_commit(in, (size_t)n);
	}
	if ((session_logging_in(s) || s->state == SESSION_VERIFYING) && s->down.len > 0 &&
	    relay_flush(&s->down, s->client.fd, &s->c_wr) < 0)
		session_client_write_failed(s);
}

/* ---- upstream ---------------------------------------------------------- */

static void session_log_upstream_failure(const struct session *s, const char *what)
{
	char addr[NET_ADDRSTRLEN], port[8];

	if (s->user == NULL && !session_log_unauthenticated(s, LOGRATE_UNREACHABLE))
		return;
	session_log_fields(s, addr, port, sizeof(addr));
	log_event(LOG_WARNING, LOG_EV_UPSTREAM_UNREACHABLE, "upstream connect failed",
		  LOG_FIELDS({"SOCKGATE_GATEWAY", session_cfg(s)->name}, {"SOCKGATE_USER", s->user},
			     {"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
			     {"UPSTREAM", session_cfg(s)->upstream[s->upstream_idx].text},
			     {"REASON", what}));
}

static void session_upstream_failed(struct session *s, const char *what)
{
	session_log_upstream_failure(s, what);
	session_close_fd(s, &s->upstream);
	s->upstream_idx++;
	session_connect_next(s);
}

static void session_connect_timeout(struct loop_timer *t)
{
	session_upstream_failed(t->arg, "connect timed out");
}

static void session_idle_timeout(struct loop_timer *t)
{
	struct session *s = t->arg;
	uint64_t idle = session_cfg(s)->idle_timeout_ms;
	uint64_t quiet = loop_now_ms(session_loop(s)) - s->active_ms;

	/* Activity does not touch the timer (that would cost a heap update per
	 * read); the timer checks when it fires and re-arms for the rest. */
	if (quiet >= idle) {
		session_close(s, "idle timeout");
		return;
	}
	if (loop_timer_arm(session_loop(s), &s->timer, idle - quiet, session_idle_timeout, s) < 0)
		session_close(s, "out of memory");
}

static void session_connect_next(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct loop *loop = session_loop(s);

	for (; s->upstream_idx < cfg->n_upstream; s->upstream_idx++) {
		const struct config_addr *a = &cfg->upstream[s->upstream_idx];
		struct errbuf err;
		int fd = net_connect((const struct sockaddr *)&a->ss, a->len, 1, &err);

		if (fd < 0) {
			session_log_upstream_failure(s, err.msg);
			continue;
		}
		s->u_rd = s->u_wr = s->u_drain = false;
		if (loop_io_add(loop, &s->upstream, fd, SESSION_EVENTS, session_upstream_cb, s) <
		    0) {
			close(fd);
			session_close(s, "cannot register socket");
			return;
		}
		if (cfg->connect_timeout_ms > 0 &&
		    loop_timer_arm(loop, &s->timer, cfg->connect_timeout_ms,
				   session_connect_timeout, s) < 0) {
			session_close(s, "out of memory");
			return;
		}
		return;
	}
	if (s->user != NULL || session_log_unauthenticated(s, LOGRATE_UNREACHABLE))
		log_event(LOG_ERR, LOG_EV_UPSTREAM_UNREACHABLE, "no upstream reachable",
			  LOG_FIELDS({"SOCKGATE_GATEWAY", cfg->name}, {"SOCKGATE_USER", s->user}));
	/* A plain relay says nothing of its own: the client just sees the close. */
	session_finish(s, cfg->authenticate ? "Service unavailable.\n" : NULL,
		       "no upstream reachable");
}

static void session_connected(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct loop *loop = session_loop(s);

	loop_timer_disarm(loop, &s->timer);
	s->connected = true;
	(void)net_set_nodelay(s->upstream.fd);
	(void)net_set_oobinline(s->upstream.fd);
	session_enter(s, SESSION_RELAYING);
	if (cfg->authenticate && session_send(s, cfg->login.success_message) < 0) {
		session_client_write_failed(s);
		return;
	}
	if (cfg->idle_timeout_ms > 0 &&
	    loop_timer_arm(loop, &s->timer, cfg->idle_timeout_ms, session_idle_timeout, s) < 0) {
		session_close(s, "out of memory");
		return;
	}
	session_relay(s);
}

/* ---- relaying ---------------------------------------------------------- */

static void session_yield_task(struct loop_task *t)
{
	struct session *s = t->arg;

	/* Drop the hold first, so this round can yield again; a close inside
	 * takes its own hold and defers the free. */
	if (s->state == SESSION_RELAYING) {
		s->holds--;
		session_relay(s);
	} else if (session_logging_in(s)) {
		s->holds--;
		session_login_input(s);
	} else {
		session_release(s);
	}
}

/* More input waits but the wakeup's budget is spent: go on after the other
 * sessions of this loop had their turn. */
static void session_yield(struct session *s)
{
	if (s->holds != 0)
		return; /* a task is queued already, and it comes back here */
	s->holds++;
	loop_defer(session_loop(s), &s->task, session_yield_task, s);
}

static const char *session_errno_reason(int e, bool client)
{
	if (e == ECONNRESET || e == EPIPE)
		return client ? "client reset" : "upstream reset";
	if (e == ETIMEDOUT)
		return client ? "client timed out" : "upstream timed out";
	if (e == ENOMEM)
		return "out of memory";
	return client ? "client error" : "upstream error";
}

static void session_relay(struct session *s)
{
	struct worker *w = s->worker;
	uint64_t moved = s->up.bytes + s->down.bytes;
	enum relay_status up, down;

	up = relay_pump(&s->up, s->client.fd, &s->c_rd, s->c_drain, s->upstream.fd, &s->u_wr,
			w->scratch, w->scratch_len, SESSION_RELAY_BUDGET);
	if (up == RELAY_SRC_ERROR || up == RELAY_DST_ERROR) {
		int e = errno;

		/* The upstream is gone, but what it sent before it went (often
		 * the reason why) still waits in our socket: pass it on first. */
		if (up == RELAY_DST_ERROR) {
			s->u_rd = true;
			(void)relay_pump(&s->down, s->upstream.fd, &s->u_rd, true, s->client.fd,
					 &s->c_wr, w->scratch, w->scratch_len,
					 SESSION_RELAY_BUDGET);
		}
		session_close(s, session_errno_reason(e, up == RELAY_SRC_ERROR));
		return;
	}
	down = relay_pump(&s->down, s->upstream.fd, &s->u_rd, s->u_drain, s->client.fd, &s->c_wr,
			  w->scratch, w->scratch_len, SESSION_RELAY_BUDGET);
	if (down == RELAY_SRC_ERROR || down == RELAY_DST_ERROR) {
		session_close(s, session_errno_reason(errno, down == RELAY_DST_ERROR));
		return;
	}
	s->active_ms = loop_now_ms(w->loop);
	if (s->up.bytes + s->down.bytes != moved)
		auth_pool_note_relaying(w->auth, s->active_ms);
	if (up == RELAY_FINISHED && down == RELAY_FINISHED) {
		session_close(s, "closed");
		return;
	}
	if (up == RELAY_YIELD || down == RELAY_YIELD)
		session_yield(s); /* more to move: let the other sessions run first */
}

/* ---- events ------------------------------------------------------------ */

static void session_client_cb(struct loop_io *io, uint32_t events)
{
	struct session *s = io->arg;

	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->c_rd = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI))
		s->c_drain = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		s->c_wr = true;

	switch (s->state) {
	case SESSION_USERNAME:
	case SESSION_PASSWORD:
		/* A reset: nobody is left to answer, so lines that came with it
		 * start no password check. */
		if (events & (EPOLLHUP | EPOLLERR)) {
			session_client_gone(s);
			return;
		}
		if (s->down.len > 0 && relay_flush(&s->down, s->client.fd, &s->c_wr) < 0) {
			session_client_write_failed(s);
			return;
		}
		session_login_input(s);
		return;
	case SESSION_VERIFYING:
	case SESSION_CONNECTING:
		/* Input waits in the socket until the relay starts (a half-close
		 * too: the client may have sent everything and shut down). A client
		 * that is gone entirely must not hold its slot. */
		if (events & (EPOLLHUP | EPOLLERR)) {
			session_client_gone(s);
			return;
		}
		if (s->down.len > 0 && relay_flush(&s->down, s->client.fd, &s->c_wr) < 0)
			session_client_write_failed(s);
		return;
	case SESSION_RELAYING:
		session_relay(s);
		return;
	case SESSION_DRAINING:
		session_drain(s);
		return;
	case SESSION_NEW:
	case SESSION_CLOSED:
		return;
	}
}

static void session_upstream_cb(struct loop_io *io, uint32_t events)
{
	struct session *s = io->arg;

	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->u_rd = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI))
		s->u_drain = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		s->u_wr = true;

	if (s->state == SESSION_CONNECTING) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		/* Each registration reports one event per batch, so this one is for
		 * the socket now being connected: writable and no error is success. */
		if (net_connect_result(s->upstream.fd) < 0) {
			char what[128];

			snprintf(what, sizeof(what), "connect: %s", strerror(errno));
			session_upstream_failed(s, what);
			return;
		}
		session_connected(s);
		return;
	}
	if (s->state == SESSION_RELAYING)
		session_relay(s);
}

void session_revoke(struct worker *w, struct gateway *const *gws, size_t n_gws)
{
	struct session *s = w->list, *next;

	for (; s != NULL; s = next) {
		const struct gateway *now = NULL;
		char addr[NET_ADDRSTRLEN], port[8];

		next = s->next;
		if (s->user == NULL ||
		    (s->state != SESSION_RELAYING && s->state != SESSION_CONNECTING))
			continue;
		for (size_t i = 0; i < n_gws && now == NULL; i++)
			if (strcmp(gws[i]->cfg->name, session_cfg(s)->name) == 0)
				now = gws[i];
		/* A gateway that is gone accepts nobody any more. */
		if (now != NULL && credentials_unchanged(s->gw->creds, now->creds, s->user))
			continue;
		session_log_fields(s, addr, port, sizeof(addr));
		log_event(LOG_NOTICE, LOG_EV_REVOKED, "access revoked",
			  LOG_FIELDS({"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
				     {"SOCKGATE_GATEWAY", session_cfg(s)->name},
				     {"SOCKGATE_USER", s->user},
				     {"REASON", now == NULL ? "gateway removed"
							    : "user removed or password changed"}));
		session_close(s, "access revoked");
	}
}

void session_close_all(struct worker *w, const char *reason)
{
	while (w->list != NULL)
		session_close(w->list, reason);
}
