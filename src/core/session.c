/* session: the per-connection state machine (see session.h). The dialogue's
 * steps are login.c's, passwords are checked by auth.c off the loop, bytes move
 * through transport.c and relay.c, upstream.c picks where to connect; this file
 * decides what happens next. */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "login.h"
#include "net.h"
#include "notify.h"
#include "proxy.h"
#include "relay.h"
#include "tls.h"
#include "transport.h"
#include "upstream.h"

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
 * loop run, as the relay does with SESSION_RELAY_BUDGET: a client that keeps
 * sending must not keep the loop from its other sessions and its timers. */
#define SESSION_LOGIN_BUDGET (16u << 10)

#define SESSION_EVENTS       (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET)

struct session_set {
	struct session_env env;
	struct session *list; /* the loop's thread only */
	unsigned count;       /* atomic: open sessions */
	unsigned logging_in;  /* atomic: of those, not yet relaying */
	char *scratch;        /* the relay's read buffer, shared by the sessions */
	int pipe[2];          /* splice()'s, for kTLS directions; made when first needed */
	size_t pipe_len;
};

/* Edge-triggered readiness of one side's socket: set by events, cleared when
 * a call meets EAGAIN. drain: read until EAGAIN (a hang-up or urgent data was
 * reported, see relay_pump). */
struct readiness {
	bool rd, wr, drain;
};

/* Lifetime. A session is freed once it is CLOSED and nothing holds it, and
 * then only after the loop's current batch of events (a later event of the
 * batch may still name it). Each hold is taken and dropped in one pair:
 *   session_start()       -> session_start_task()    the hand-over to the loop
 *   session_submit_check() -> session_auth_done()     a password check in flight
 *   session_yield()       -> session_yield_task()    more to do after the batch
 *   session_close()       -> session_release()       the close itself
 * The pairs share one loop_task (s->task): at most one of the first three and
 * the final free is queued at a time, which holds counts. */
struct session {
	struct loop_task task;
	struct session *prev, *next;
	struct session_set *set;
	struct gateway *gw;
	struct login *login;     /* only while logging in */
	struct pamauth_job *pam; /* a PAM gateway's transaction, kept for the next attempt */
	char *user;              /* once authenticated */
	struct loop_io client_io, upstream_io;
	struct transport client, upstream;
	struct readiness c, u;
	struct loop_timer timer; /* grace time, connect timeout, idle, linger */
	struct loop_timer life;  /* timeouts.session, from the login on */
	struct relay_dir up;     /* client -> upstream */
	struct relay_dir down;   /* upstream -> client; also login output */
	struct upstream_choice choice;
	struct recording *rec; /* record = {...}: what is relayed, from the relay's start */
	uint64_t started_ms, active_ms;
	uint64_t login_ms;                /* logged in (or, for a plain relay, connecting) */
	uint64_t counted_in, counted_out; /* bytes already added to the gateway's metrics */
	int carry_slot;    /* its record in the carry file (kept in the fd store), or -1 */
	bool handing_over; /* closing for the next process, which takes it over */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer;
	struct sockaddr_storage local; /* the address the client reached (a PROXY header's dst) */
	bool have_local;
	char id[28]; /* for logs and PROXY v2's UNIQUE_ID: unique across restarts */
	int target;  /* index into cfg->targets, or -1: the gateway's own upstream */
	struct credentials_access access; /* who may reach the target named */
	const char *close_reason;
	char *close_detail; /* close_reason when it had to be made: freed with s */
	unsigned holds;
	unsigned short linger_reads;
	enum session_state state : 8;
	bool counted_login;
	bool counted_user;           /* in the gateway's per-user count */
	bool pam_busy;               /* the PAM pool holds s->pam until its DONE event */
	bool connected;              /* the upstream accepted (and its TLS is up) */
	bool upstream_handshake;     /* the upstream's TLS handshake is under way */
	bool raw_drain;              /* the client's TLS never started: drain the socket */
	bool tls_up;                 /* the client's TLS handshake is done */
	bool splice_up, splice_down; /* the kernel encrypts: relay with splice() */
	uint32_t source_ticket;      /* in the penalty table's per-source login count */
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
static void session_begin(struct session *s);
static void session_after_proxy(struct session *s);
static void session_admit_pass(struct session *s);
static void session_life_timeout(struct loop_timer *t);
static void session_log_login(const struct session *s, enum log_event ev, const char *user,
			      const char *reason);
static void session_read_proxy(struct session *s);
static void session_proxy_timeout(struct loop_timer *t);
static void session_handshake(struct session *s);
static void session_grace_timeout(struct loop_timer *t);
static void session_connected(struct session *s);
static void session_upstream_failed(struct session *s, const char *what);
static int session_send_proxy_out(struct session *s);
static void session_authenticated(struct session *s, const char *groups, size_t groups_len);
static const char *session_groups(struct session *s, size_t *len);
static void session_choose_splice(struct session *s);
static void session_start_recording(struct session *s);
static int session_send(struct session *s, const char *text);
static void session_idle_timeout(struct loop_timer *t);

/* The state as logs name it: a login in progress by its step. */
static const char *session_state_text(const struct session *s)
{
	static const char *const names[] = {
		[SESSION_NEW] = "new",
		[SESSION_PROXY] = "proxy",
		[SESSION_HANDSHAKE] = "handshake",
		[SESSION_LOGIN] = "login",
		[SESSION_VERIFYING] = "verifying",
		[SESSION_CONNECTING] = "connecting",
		[SESSION_RELAYING] = "relaying",
		[SESSION_DRAINING] = "draining",
		[SESSION_CLOSED] = "closed",
	};

	if (s->state == SESSION_LOGIN && s->login != NULL)
		return login_step_name(s->login);
	return (unsigned)s->state < sizeof(names) / sizeof(names[0]) ? names[s->state] : "?";
}

static struct loop *session_loop(const struct session *s)
{
	return s->set->env.loop;
}

static const struct config_gateway *session_cfg(const struct session *s)
{
	return s->gw->cfg;
}

static bool session_logging_in(const struct session *s)
{
	return s->state == SESSION_LOGIN;
}

/* "TLSv1.3 TLS_AES_256_GCM_SHA384 resumed ktls=send", or NULL without TLS;
 * subject gets the client certificate's subject, or "". */
static const char *session_tls_text(const struct session *s, char *buf, size_t len, char *subject,
				    size_t subject_len)
{
	struct tls_info info;

	subject[0] = '\0';
	if (!s->tls_up || !tls_describe(&s->client, &info))
		return NULL;
	snprintf(buf, len, "%s %s%s ktls=%s%s", info.version, info.cipher,
		 info.resumed ? " resumed" : "",
		 info.ktls_send && info.ktls_recv ? "both"
		 : info.ktls_send                 ? "send"
		 : info.ktls_recv                 ? "recv"
						  : "none",
		 s->splice_down ? " splice" : "");
	snprintf(subject, subject_len, "%s", info.subject);
	return buf;
}

/* ---- the set ------------------------------------------------------------ */

struct session_set *session_set_create(const struct session_env *env, struct errbuf *err)
{
	struct session_set *set = calloc(1, sizeof(*set));

	if (set != NULL)
		set->scratch = malloc(env->scratch_len);
	if (set == NULL || set->scratch == NULL) {
		free(set);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	set->env = *env;
	set->pipe[0] = set->pipe[1] = -1;
	return set;
}

void session_set_free(struct session_set *set)
{
	if (set == NULL)
		return;
	if (set->pipe[0] >= 0) {
		close(set->pipe[0]);
		close(set->pipe[1]);
	}
	free(set->scratch);
	free(set);
}

/* The loop's pipe for splice(), as large as the relay's reads where the system
 * allows; false if there is none to be had (then the bytes are copied). */
static bool session_set_pipe(struct session_set *set)
{
	int sz;

	if (set->pipe[0] >= 0)
		return true;
	if (pipe2(set->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		set->pipe[0] = set->pipe[1] = -1;
		return false;
	}
	sz = fcntl(set->pipe[1], F_SETPIPE_SZ, (int)set->env.scratch_len);
	if (sz < 0)
		sz = fcntl(set->pipe[1], F_GETPIPE_SZ);
	set->pipe_len = sz > 0 ? (size_t)sz : 65536;
	return true;
}

unsigned session_set_count(const struct session_set *set)
{
	return __atomic_load_n(&set->count, __ATOMIC_RELAXED);
}

unsigned session_set_logging_in(const struct session_set *set)
{
	return __atomic_load_n(&set->logging_in, __ATOMIC_RELAXED);
}

static void session_set_link(struct session_set *set, struct session *s)
{
	s->next = set->list;
	if (s->next != NULL)
		s->next->prev = s;
	set->list = s;
}

static void session_set_unlink(struct session_set *set, struct session *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		set->list = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

/* ---- lifetime ----------------------------------------------------------- */

struct session *session_create(struct gateway *gw, int fd, const struct sockaddr *peer,
			       socklen_t peerlen)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->gw = gw;
	transport_tcp(&s->client, fd);
	s->client_io.fd = -1;
	s->upstream_io.fd = -1;
	s->carry_slot = -1;
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
	if (s->pam != NULL) {
		explicit_bzero(s->pam, sizeof(*s->pam));
		free(s->pam);
	}
	free(s->user);
	free(s->close_detail);
	gateway_unref(s->gw);
	free(s);
}

static void session_free_task(struct loop_task *t)
{
	session_free(t->arg);
}

/* Drops one hold; a closed session with none left is freed after the batch. */
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
		__atomic_sub_fetch(&s->set->logging_in, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&s->gw->counters->logging_in, 1, __ATOMIC_RELAXED);
		s->counted_login = false;
	}
	if (st == SESSION_CONNECTING && s->login_ms == 0)
		s->login_ms = loop_now_ms(session_loop(s));
	if (s->source_ticket != 0 && !is_login) {
		penalty_login_done(s->set->env.penalties, &s->peer.sa, s->source_ticket);
		s->source_ticket = 0;
	}
	s->state = st;
}

static void session_log_fields(const struct session *s, char *addr, char *port, size_t addrlen)
{
	net_format_host(&s->peer.sa, addr, addrlen);
	snprintf(port, 8, "%u", net_sockaddr_port(&s->peer.sa));
}

/* Whether a line about s, a session that never logged in (and never relayed),
 * may be written in full: a flood of such sessions is summarised per source
 * (lograte). */
static bool session_log_unauthenticated(const struct session *s, enum lograte_kind kind)
{
	struct lograte *lr = s->set->env.lograte;

	return lr == NULL || lograte_admit(lr, &s->peer.sa, kind, loop_now_ms(session_loop(s)));
}

static void session_log_closed(const struct session *s, const char *reason)
{
	char addr[NET_ADDRSTRLEN], port[8], in[24], out[24], dur[24], tls[128], subject[256];
	const char *tls_text;

	if (s->user == NULL && !s->connected && !session_log_unauthenticated(s, LOGRATE_CLOSED))
		return;
	session_log_fields(s, addr, port, sizeof(addr));
	snprintf(in, sizeof(in), "%llu", (unsigned long long)s->up.bytes);
	snprintf(out, sizeof(out), "%llu", (unsigned long long)s->down.bytes);
	snprintf(dur, sizeof(dur), "%llu",
		 (unsigned long long)(loop_now_ms(session_loop(s)) - s->started_ms));
	tls_text = session_tls_text(s, tls, sizeof(tls), subject, sizeof(subject));
	log_event(
		LOG_INFO, LOG_EV_SESSION_CLOSED, "session closed",
		LOG_FIELDS({"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
			   {"SOCKGATE_GATEWAY", session_cfg(s)->name}, {"SOCKGATE_USER", s->user},
			   {"SOCKGATE_TARGET",
			    s->choice.pool != NULL ? pool_target(s->choice.pool) : NULL},
			   {"UPSTREAM", s->connected ? s->choice.addr->text : NULL},
			   {"SOCKGATE_SESSION", s->id}, {"SOCKGATE_STATE", session_state_text(s)},
			   {"REASON", reason}, {"BYTES_IN", in}, {"BYTES_OUT", out},
			   {"DURATION_MS", dur}, {"SOCKGATE_TLS", tls_text},
			   {"SOCKGATE_TLS_SUBJECT", subject[0] != '\0' ? subject : NULL},
			   {"SOCKGATE_RECORDING", s->rec != NULL ? recording_path(s->rec) : NULL}));
}

/* Adds what was relayed since the last call to the gateway's byte counters:
 * once per wakeup that moved bytes, not per chunk. */
static void session_count_bytes(struct session *s)
{
	if (s->up.bytes != s->counted_in) {
		stats_add(&s->gw->stats->bytes_in, s->up.bytes - s->counted_in);
		s->counted_in = s->up.bytes;
	}
	if (s->down.bytes != s->counted_out) {
		stats_add(&s->gw->stats->bytes_out, s->down.bytes - s->counted_out);
		s->counted_out = s->down.bytes;
	}
}

/* The recording's end, after the closed line that names its file. */
static void session_stop_recording(struct session *s, const char *reason)
{
	uint64_t dropped;

	if (s->rec == NULL)
		return;
	dropped = recording_dropped(s->rec);
	if (dropped > 0) {
		char n[24];

		snprintf(n, sizeof(n), "%llu", (unsigned long long)dropped);
		log_event(LOG_WARNING, LOG_EV_RECORDING,
			  "recording incomplete: the disk was behind",
			  LOG_FIELDS({"SOCKGATE_GATEWAY", session_cfg(s)->name},
				     {"SOCKGATE_SESSION", s->id},
				     {"SOCKGATE_RECORDING", recording_path(s->rec)},
				     {"SOCKGATE_DROPPED_BYTES", n}));
	}
	recording_close(s->rec, reason, loop_now_ms(session_loop(s)));
	s->rec = NULL;
	s->up.tap = s->down.tap = NULL;
}

/* ---- carried sessions (systemd's fd store, carry.h) ---------------------- */

static void session_carry_name(const struct session *s, bool client, char *name, size_t len)
{
	carry_session_name(s->carry_slot, client, name, len);
}

static int64_t session_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the next process needs to go on with s. */
static void session_carry_record(const struct session *s, struct carry_record *r)
{
	int64_t now_unix = session_unix_ms();
	uint64_t now = loop_now_ms(session_loop(s));
	const char *target = s->choice.pool != NULL ? pool_target(s->choice.pool) : NULL;

	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", s->id);
	snprintf(r->gateway, sizeof(r->gateway), "%s", session_cfg(s)->name);
	snprintf(r->user, sizeof(r->user), "%s", s->user != NULL ? s->user : "");
	snprintf(r->target, sizeof(r->target), "%s", target != NULL ? target : "");
	snprintf(r->upstream, sizeof(r->upstream), "%s", s->choice.addr->text);
	r->peer_len = s->peer.sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						       : sizeof(struct sockaddr_in);
	memcpy(&r->peer, &s->peer, r->peer_len);
	r->started_unix_ms = now_unix - (int64_t)(now - s->started_ms);
	r->login_unix_ms = now_unix - (int64_t)(now - s->login_ms);
	r->bytes_in = s->up.bytes;
	r->bytes_out = s->down.bytes;
	r->in_eof = s->up.eof;
	r->in_shut = s->up.shut;
	r->out_eof = s->down.eof;
	r->out_shut = s->down.shut;
}

/* A relayed session's sockets go to the fd store and its record to the carry
 * file, so that a restart, an upgrade or a crash does not end it. Not a TLS
 * side: its keys and sequence numbers live in this process. */
static void session_carry(struct session *s)
{
	struct carry *c = s->set->env.carry;
	struct tls_info info;
	struct carry_record r;
	char name_c[96], name_u[96];
	int slot;

	if (c == NULL || tls_describe(&s->client, &info) || tls_describe(&s->upstream, &info))
		return;
	session_carry_record(s, &r);
	slot = carry_put(c, &r);
	if (slot < 0)
		return;
	carry_session_name(slot, true, name_c, sizeof(name_c));
	carry_session_name(slot, false, name_u, sizeof(name_u));
	if (!notify_fdstore_add(name_c, &s->client.fd, 1) ||
	    !notify_fdstore_add(name_u, &s->upstream.fd, 1)) {
		(void)notify_fdstore_remove(name_c);
		carry_drop(c, slot);
		return;
	}
	s->carry_slot = slot;
}

/* The session ends here (not handed over): out of the store and the file. */
static void session_uncarry(struct session *s)
{
	char name[96];

	if (s->carry_slot < 0 || s->handing_over)
		return;
	session_carry_name(s, true, name, sizeof(name));
	(void)notify_fdstore_remove(name);
	session_carry_name(s, false, name, sizeof(name));
	(void)notify_fdstore_remove(name);
	carry_drop(s->set->env.carry, s->carry_slot);
	s->carry_slot = -1;
	/* PID 1 closes its copies when it reads the removals: the peers get
	 * their end now, whatever it does and when. */
	(void)shutdown(s->client.fd, SHUT_RDWR);
	(void)shutdown(s->upstream.fd, SHUT_RDWR);
}

/* A planned stop: the record gets the session's counters and half-closes,
 * and the bytes it holds go to side files, so the next process goes on
 * where this one stopped, without a byte lost. Nothing more is read. */
static void session_hand_over(struct session *s)
{
	struct carry *c = s->set->env.carry;
	struct carry_record r;

	session_carry_record(s, &r);
	/* Bytes that cannot be saved would leave a hole in the stream: then the
	 * next process ends the session rather than relay on past it. */
	if (s->up.len > 0)
		r.held_in = carry_hold(c, s->id, true, s->up.buf + s->up.off, s->up.len) == 0
				    ? s->up.len
				    : CARRY_HELD_LOST;
	if (s->down.len > 0)
		r.held_out =
			carry_hold(c, s->id, false, s->down.buf + s->down.off, s->down.len) == 0
				? s->down.len
				: CARRY_HELD_LOST;
	carry_update(c, s->carry_slot, &r);
	s->handing_over = true;
	session_close(s, r.held_in == CARRY_HELD_LOST || r.held_out == CARRY_HELD_LOST
				 ? "handed over, but the bytes it held could not be saved"
				 : "handed over to the next process");
}

/* A session the restart cannot carry: a client that saw a prompt is told to
 * come back (through its transport, TLS or not; best effort, never
 * blocking); the log says why it ended. */
static const char *session_restart_reason(struct session *s)
{
	struct tls_info info;

	switch (s->state) {
	case SESSION_LOGIN:
	case SESSION_VERIFYING:
	case SESSION_CONNECTING:
		if (session_cfg(s)->authenticate)
			(void)session_send(s, "The service is restarting; please reconnect.\n");
		return "restart: logging in";
	case SESSION_RELAYING:
		return tls_describe(&s->client, &info) || tls_describe(&s->upstream, &info)
			       ? "restart: a TLS session is not carried over"
			       : "restart: it could not be kept in systemd's fd store";
	default:
		return "restart";
	}
}

void session_set_hand_over(struct session_set *set)
{
	while (set->list != NULL) {
		struct session *s = set->list;

		if (s->state == SESSION_RELAYING && s->carry_slot >= 0) {
			session_hand_over(s);
			continue;
		}
		session_close(s, session_restart_reason(s));
	}
}

struct session *session_resume(struct gateway *gw, int client_fd, int upstream_fd,
			       const struct carry_record *r, int slot, const char **why)
{
	const struct config_gateway *cfg = gw->cfg;
	struct pool *pool = gw->pool;
	struct session *s;
	int target = -1;

	if (r->target[0] != '\0') {
		for (size_t i = 0; i < cfg->n_targets; i++)
			if (strcmp(cfg->targets[i].name, r->target) == 0)
				target = (int)i;
		if (target < 0) {
			*why = "its target is no longer configured";
			return NULL;
		}
		pool = gw->target_pools[target];
	}
	s = session_create(gw, client_fd, (const struct sockaddr *)&r->peer, r->peer_len);
	if (s == NULL) {
		*why = "out of memory";
		return NULL;
	}
	if (!upstream_choice_adopt(&s->choice, pool, r->upstream)) {
		free(s);
		*why = "its upstream is no longer configured";
		return NULL;
	}
	if (r->user[0] != '\0' && (s->user = strdup(r->user)) == NULL) {
		upstream_choice_end(&s->choice);
		free(s);
		*why = "out of memory";
		return NULL;
	}
	transport_tcp(&s->upstream, upstream_fd);
	snprintf(s->id, sizeof(s->id), "%s", r->id);
	s->target = target;
	s->connected = true;
	s->carry_slot = slot;
	s->up.bytes = s->counted_in = r->bytes_in;
	s->down.bytes = s->counted_out = r->bytes_out;
	s->up.eof = r->in_eof;
	s->up.shut = r->in_shut;
	s->down.eof = r->out_eof;
	s->down.shut = r->out_shut;
	return s;
}

void session_abandon(struct session *s)
{
	relay_dir_release(&s->up);
	relay_dir_release(&s->down);
	upstream_choice_end(&s->choice);
	/* The sockets stay the caller's. */
	s->client.ops = s->upstream.ops = NULL;
	session_free(s);
}

/* Bytes the process before held for one direction: they go first. */
int session_resume_held(struct session *s, bool in, const char *buf, size_t len)
{
	return len == 0 ? 0 : relay_queue(in ? &s->up : &s->down, buf, len);
}

static void session_resume_task(struct loop_task *t)
{
	struct session *s = t->arg;
	struct session_set *set = s->set;
	const struct config_gateway *cfg = session_cfg(s);
	struct loop *loop = set->env.loop;
	uint64_t now = loop_now_ms(loop), lived;

	s->holds--;
	s->started_ms = now - s->started_ms;
	s->login_ms = now - s->login_ms;
	s->active_ms = now;
	session_set_link(set, s);
	s->state = SESSION_RELAYING;
	s->c = (struct readiness){true, true, true};
	s->u = (struct readiness){true, true, true};
	(void)net_set_nonblock(s->client.fd, 1);
	(void)net_set_nonblock(s->upstream.fd, 1);
	if (loop_io_add(loop, &s->client_io, s->client.fd, SESSION_EVENTS, session_client_cb, s) <
		    0 ||
	    loop_io_add(loop, &s->upstream_io, s->upstream.fd, SESSION_EVENTS, session_upstream_cb,
			s) < 0) {
		session_close(s, "cannot register socket");
		return;
	}
	lived = now - s->login_ms;
	if (cfg->session_timeout_ms > 0 &&
	    loop_timer_arm(loop, &s->life,
			   cfg->session_timeout_ms > lived ? cfg->session_timeout_ms - lived : 0,
			   session_life_timeout, s) < 0) {
		session_close(s, "out of memory");
		return;
	}
	if (cfg->idle_timeout_ms > 0 &&
	    loop_timer_arm(loop, &s->timer, cfg->idle_timeout_ms, session_idle_timeout, s) < 0) {
		session_close(s, "out of memory");
		return;
	}
	session_start_recording(s);
	/* The record as it is now: a crash of this process must not look for the
	 * side files it has taken already. */
	{
		struct carry_record r;

		session_carry_record(s, &r);
		carry_update(set->env.carry, s->carry_slot, &r);
	}
	session_relay(s);
}

void session_start_resumed(struct session *s, struct session_set *set, uint64_t started_ago_ms,
			   uint64_t login_ago_ms)
{
	s->set = set;
	s->holds = 1;
	/* Ages until the loop's clock turns them into times. */
	s->started_ms = started_ago_ms;
	s->login_ms = login_ago_ms;
	if (s->user != NULL) {
		/* Counted whatever the limits: the session is there already. */
		(void)gateway_user_begin(s->gw, s->user);
		s->counted_user = true;
	}
	__atomic_add_fetch(&s->gw->counters->sessions, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&set->count, 1, __ATOMIC_RELAXED);
	loop_post(set->env.loop, &s->task, session_resume_task, s);
}

/* Stops watching a side and closes it. */
static void session_close_side(struct session *s, struct loop_io *io, struct transport *t)
{
	loop_io_del(session_loop(s), io);
	transport_close(t);
}

/* The one way a session ends. */
static void session_close(struct session *s, const char *reason)
{
	struct session_set *set = s->set;

	if (s->state == SESSION_CLOSED)
		return;
	/* The slot is free before the line saying so is written: whoever reads
	 * the log may connect again at once. */
	session_set_unlink(set, s);
	__atomic_sub_fetch(&set->count, 1, __ATOMIC_RELAXED);
	gateway_session_end(s->gw);
	session_count_bytes(s);
	if (s->connected && !s->handing_over) /* the next process observes it */
		stats_observe_session(s->gw->stats, loop_now_ms(set->env.loop) - s->login_ms);
	if (s->counted_user)
		gateway_user_end(s->gw, s->user);
	s->counted_user = false;
	session_log_closed(s, reason);
	session_stop_recording(s, reason);
	session_uncarry(s);
	session_enter(s, SESSION_CLOSED);
	loop_timer_disarm(set->env.loop, &s->timer);
	loop_timer_disarm(set->env.loop, &s->life);
	session_close_side(s, &s->client_io, &s->client);
	session_close_side(s, &s->upstream_io, &s->upstream);
	relay_dir_release(&s->up);
	relay_dir_release(&s->down);
	upstream_choice_end(&s->choice);
	if (s->login != NULL) {
		loop_timer_disarm(set->env.loop, &s->login->delay);
		login_wipe(s->login);
	}
	/* PAM stops asking; its DONE event still comes back and frees the hold. */
	if (s->pam_busy)
		pamauth_cancel(set->env.pam, s->pam);
	s->holds++;
	session_release(s);
}

/* ---- output to the client ------------------------------------------------ */

/* Queues text for the client; session_login_input() writes what a batch of
 * login input produced in one go. */
static int session_queue(struct session *s, const char *text)
{
	return relay_queue(&s->down, text, strlen(text));
}

/* Queues text for the client and writes what it takes now. */
static int session_send(struct session *s, const char *text)
{
	if (session_queue(s, text) < 0)
		return -1;
	if (relay_flush(&s->down, &s->client, &s->c.wr) < 0)
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
	} else if (errno == ENOMEM) {
		session_close(s, "out of memory");
	} else {
		session_close(s, "client write error");
	}
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
	session_close_side(s, &s->upstream_io, &s->upstream);
	relay_dir_release(&s->up);
	if (s->login != NULL) {
		loop_timer_disarm(session_loop(s), &s->login->delay);
		login_wipe(s->login);
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
	session_client_cb(&s->client_io, 0);
}

static void session_drain(struct session *s)
{
	char buf[4096];

	if (s->down.len > 0) {
		int r = relay_flush(&s->down, &s->client, &s->c.wr);

		if (r < 0) {
			session_close(s, s->close_reason);
			return;
		}
		if (r > 0)
			return;
	}
	if (!s->down.shut) {
		if (s->raw_drain)
			(void)shutdown(s->client.fd, SHUT_WR);
		else
			(void)transport_shutdown(&s->client);
		s->down.shut = true;
	}
	while (s->c.rd) {
		/* A client that never finished its TLS handshake is read as bytes,
		 * to its end: so the close is a FIN, not a reset. */
		ssize_t n = s->raw_drain ? recv(s->client.fd, buf, sizeof(buf), 0)
					 : transport_recv(&s->client, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			s->c.rd = false;
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

/* ---- login --------------------------------------------------------------- */

static void session_grace_timeout(struct loop_timer *t)
{
	struct session *s = t->arg;

	session_penalise(s, PENALTY_GRACE, "login grace time expired");
	session_finish(s, "\nLogin timed out.\n", "login grace time expired");
}

/* A random prefix per process, then a counter: unique across workers,
 * restarts and instances behind one balancer, without a syscall per session. */
static void session_make_id(struct session *s)
{
	static uint32_t prefix;
	static uint64_t counter;
	uint32_t p = __atomic_load_n(&prefix, __ATOMIC_RELAXED);

	if (p == 0) {
		if (getrandom(&p, sizeof(p), GRND_NONBLOCK) != sizeof(p))
			p = (uint32_t)loop_clock_ms() ^ (uint32_t)getpid() << 16;
		p |= 1;
		__atomic_store_n(&prefix, p, __ATOMIC_RELAXED);
	}
	snprintf(s->id, sizeof(s->id), "%08x%016llx", p,
		 (unsigned long long)__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
}

static void session_start_task(struct loop_task *t)
{
	struct session *s = t->arg;
	struct session_set *set = s->set;
	const struct config_gateway *cfg = session_cfg(s);

	s->holds--;
	s->started_ms = s->active_ms = loop_now_ms(set->env.loop);
	session_make_id(s);
	s->target = -1;
	session_set_link(set, s);
	s->state = SESSION_NEW;
	s->c.wr = true;
	/* Prompts are small writes that must not wait for Nagle; urgent data
	 * (telnet's Interrupt) is relayed in line, not dropped. */
	(void)net_set_nodelay(s->client.fd);
	(void)net_set_oobinline(s->client.fd);
	if (s->gw->tls != NULL) {
		struct errbuf err;
		int fd = s->client.fd;

		s->client.ops = NULL; /* the TLS transport takes the socket over */
		if (transport_tls_server(&s->client, fd, s->gw->tls, &err) < 0) {
			session_close(s, "out of memory");
			return;
		}
	}
	if (loop_io_add(set->env.loop, &s->client_io, s->client.fd, SESSION_EVENTS,
			session_client_cb, s) < 0) {
		session_close(s, "cannot register socket");
		return;
	}
	/* The grace time covers the handshake too. */
	if (cfg->login.grace_time_ms > 0 &&
	    loop_timer_arm(set->env.loop, &s->timer, cfg->login.grace_time_ms,
			   session_grace_timeout, s) < 0) {
		session_close(s, "out of memory");
		return;
	}
	if (cfg->proxy_protocol.enabled) {
		if (loop_timer_arm(set->env.loop, &s->life, cfg->proxy_protocol.timeout_ms,
				   session_proxy_timeout, s) < 0) {
			session_close(s, "out of memory");
			return;
		}
		session_enter(s, SESSION_PROXY);
		session_read_proxy(s);
		return;
	}
	session_after_proxy(s);
}

/* What comes first once the client's address is known: TLS, or the prompt. */
static void session_after_proxy(struct session *s)
{
	if (s->gw->tls != NULL) {
		session_enter(s, SESSION_HANDSHAKE);
		session_handshake(s);
		return;
	}
	session_begin(s);
}

static void session_proxy_timeout(struct loop_timer *t)
{
	session_close(t->arg, "no PROXY header in time");
}

/* The PROXY header of a balancer: peeked until complete, then exactly its
 * bytes read, so what follows (a TLS handshake, login lines) stays in the
 * socket. Its source address becomes the client's, and the per-source checks
 * the accept could not make are made now. A health check (v2 LOCAL, v1
 * UNKNOWN) is closed at once. */
static void session_read_proxy(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	unsigned accept = cfg->proxy_protocol.accept == CONFIG_PROXY_V1   ? PROXY_V1
			  : cfg->proxy_protocol.accept == CONFIG_PROXY_V2 ? PROXY_V2
									  : PROXY_V1 | PROXY_V2;
	uint8_t buf[PROXY_V2_MAX];
	struct proxy_header h;
	struct admission_refusal r;
	struct errbuf why;
	char reason[ERRBUF_LEN + 32];
	uint32_t ticket = 0;
	ssize_t n;

	n = recv(s->client.fd, buf, sizeof(buf), MSG_PEEK);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			s->c.rd = false;
			return;
		}
		session_close(s, "balancer reset before the PROXY header");
		return;
	}
	if (n == 0) {
		session_close(s, "balancer closed before the PROXY header");
		return;
	}
	switch (proxy_parse(buf, (size_t)n, accept, &h, &why)) {
	case PROXY_NEED_MORE:
		s->c.rd = false; /* the rest comes with the next event */
		return;
	case PROXY_INVALID:
		stats_refused(s->gw->stats, STATS_REFUSED_BAD_PROXY_HEADER);
		snprintf(reason, sizeof(reason), "bad PROXY header: %s", why.msg);
		free(s->close_detail);
		s->close_detail = strdup(reason);
		session_close(s, s->close_detail != NULL ? s->close_detail : "bad PROXY header");
		return;
	case PROXY_OK:
		break;
	}
	if (recv(s->client.fd, buf, h.length, 0) != (ssize_t)h.length) {
		session_close(s, "balancer reset during the PROXY header");
		return;
	}
	loop_timer_disarm(session_loop(s), &s->life);
	if (h.family != AF_INET && h.family != AF_INET6) {
		session_close(s, "PROXY health check (no client address)");
		return;
	}
	memcpy(&s->peer, &h.src,
	       h.family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	memcpy(&s->local, &h.dst, sizeof(s->local));
	s->have_local = true;
	if (!admission_check_source(s->set->env.admission, cfg, &s->peer.sa,
				    loop_now_ms(session_loop(s)), &ticket, &r)) {
		stats_refused(s->gw->stats, r.why);
		snprintf(reason, sizeof(reason), "refused: %s", r.reason);
		free(s->close_detail);
		s->close_detail = strdup(reason);
		session_finish(s, r.message, s->close_detail != NULL ? s->close_detail : "refused");
		return;
	}
	s->source_ticket = ticket;
	session_after_proxy(s);
}

/* The connection is ready for its first words: the prompt, or for a plain
 * relay the upstream. */
static void session_begin(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);

	if (cfg->authenticate_mode == CONFIG_AUTHENTICATE_PASS) {
		session_admit_pass(s);
		return;
	}
	if (!cfg->authenticate) {
		/* A plain relay: straight to the upstream. */
		session_enter(s, SESSION_CONNECTING);
		upstream_choice_begin(&s->choice, s->gw->pool, &s->peer.sa,
				      loop_now_ms(session_loop(s)));
		session_connect_next(s);
		return;
	}
	s->login = calloc(1, sizeof(*s->login));
	if (s->login == NULL) {
		session_close(s, "out of memory");
		return;
	}
	s->login->pam = cfg->auth == CONFIG_AUTH_PAM;
	session_enter(s, SESSION_LOGIN);
	if (session_send(s, login_first_prompt(&cfg->login)) < 0) {
		session_client_write_failed(s);
		return;
	}
	/* TLS: lines that came with the end of the handshake were there before
	 * it ended (in the socket, or inside the TLS layer), and no new event
	 * will say so. */
	if (s->tls_up)
		session_login_input(s);
}

/* authenticate = "pass": no prompt. The client's address logged in on
 * pass.from_gateway within pass.duration, or the connection just ends (a
 * binary client would not understand a line). The pass's user and target go
 * on to the logs, the caps and the PROXY header. */
static void session_admit_pass(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	char user[PASSES_MAX_NAME + 1], target[PASSES_MAX_NAME + 1], from[PASSES_MAX_NAME + 16];

	if (!passes_find(s->set->env.passes, cfg->pass.from_gateway, &s->peer.sa,
			 cfg->pass.duration_ms, loop_now_ms(session_loop(s)), user, target)) {
		session_close(s, "no pass for this address");
		return;
	}
	s->user = strdup(user);
	if (s->user == NULL) {
		session_close(s, "out of memory");
		return;
	}
	for (size_t i = 0; i < cfg->n_targets; i++)
		if (strcmp(cfg->targets[i].name, target) == 0)
			s->target = (int)i;
	snprintf(from, sizeof(from), "pass from %s", cfg->pass.from_gateway);
	session_log_login(s, LOG_EV_LOGIN_OK, s->user, from);
	if (!gateway_user_begin(s->gw, s->user)) {
		session_close(s, "max_sessions_per_user reached");
		return;
	}
	s->counted_user = true;
	if (cfg->session_timeout_ms > 0 &&
	    loop_timer_arm(session_loop(s), &s->life, cfg->session_timeout_ms, session_life_timeout,
			   s) < 0) {
		session_close(s, "out of memory");
		return;
	}
	loop_timer_disarm(session_loop(s), &s->timer);
	session_enter(s, SESSION_CONNECTING);
	upstream_choice_begin(&s->choice,
			      s->target >= 0 ? s->gw->target_pools[s->target] : s->gw->pool,
			      &s->peer.sa, loop_now_ms(session_loop(s)));
	session_connect_next(s);
}

/* The client's TLS handshake, as far as the socket allows. A failure counts
 * against the source as a failed login (a handshake flood is penalised). */
static void session_handshake(struct session *s)
{
	char reason[ERRBUF_LEN + 32];
	struct errbuf why;
	bool silent;

	switch (tls_handshake(&s->client, &why)) {
	case TLS_DONE:
		stats_inc(&s->gw->stats->tls_ok);
		s->tls_up = true;
		s->c.rd = s->c.wr = true;
		session_begin(s);
		return;
	case TLS_WANT_READ:
	case TLS_WANT_WRITE:
		return; /* the next event comes back here */
	case TLS_FAILED:
		break;
	}
	snprintf(reason, sizeof(reason), "TLS handshake failed: %s", why.msg);
	/* A peer that left without a word (a balancer's TCP check) is no failed
	 * login, only an abandoned connection. */
	silent = strcmp(why.msg, "the peer closed before the handshake") == 0;
	if (!silent)
		stats_inc(&s->gw->stats->tls_failed);
	session_penalise(s, silent ? PENALTY_NOAUTH : PENALTY_AUTHFAIL,
			 silent ? "client closed before the TLS handshake"
				: "failed TLS handshake");
	free(s->close_detail);
	s->close_detail = strdup(reason);
	/* Whatever the client sent is read to its end first, so it gets a FIN,
	 * not a reset. */
	s->raw_drain = true;
	session_finish(s, NULL, s->close_detail != NULL ? s->close_detail : "TLS handshake failed");
}

void session_start(struct session *s, struct session_set *set, uint32_t source_ticket)
{
	s->set = set;
	s->holds = 1;
	s->source_ticket = source_ticket;
	/* Counted here, on the accepting thread, so the next accept already sees
	 * this connection in the start-up limits. */
	s->counted_login = true;
	__atomic_add_fetch(&set->count, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&set->logging_in, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->gw->counters->logging_in, 1, __ATOMIC_RELAXED);
	loop_post(set->env.loop, &s->task, session_start_task, s);
}

static void session_log_login(const struct session *s, enum log_event ev, const char *user,
			      const char *reason)
{
	char addr[NET_ADDRSTRLEN], port[8], attempt[12], tls[128], subject[256];
	const char *tls_text = session_tls_text(s, tls, sizeof(tls), subject, sizeof(subject));

	if (ev == LOG_EV_LOGIN_OK)
		stats_inc(&s->gw->stats->logins_ok);
	else
		stats_login_failed(s->gw->stats, stats_login_reason(reason));
	session_log_fields(s, addr, port, sizeof(addr));
	snprintf(attempt, sizeof(attempt), "%u",
		 s->login != NULL ? s->login->failures + (ev == LOG_EV_LOGIN_OK) : 0);
	log_event(ev == LOG_EV_LOGIN_OK ? LOG_INFO : LOG_WARNING, ev,
		  ev == LOG_EV_LOGIN_OK ? "login ok" : "login failed",
		  /* The address first: a filter (fail2ban) anchors on it, and what a
		   * client typed as its user name can then never pose as it. */
		  LOG_FIELDS({"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
			     {"SOCKGATE_GATEWAY", session_cfg(s)->name}, {"SOCKGATE_USER", user},
			     {"SOCKGATE_ATTEMPT", attempt}, {"REASON", reason},
			     {"SOCKGATE_SESSION", s->id}, {"SOCKGATE_TLS", tls_text},
			     {"SOCKGATE_TLS_SUBJECT", subject[0] != '\0' ? subject : NULL}));
}

/* Adds a penalty to the client's source; logs when that starts a refusal. */
static void session_penalise(struct session *s, enum penalty_event ev, const char *why)
{
	struct penalty_table *pt = s->set->env.penalties;
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
			     {"SOCKGATE_SOURCE", source}, {"DURATION_MS", dur}, {"REASON", why},
			     {"SOCKGATE_SESSION", s->id}));
}

/* The client leaves, or is sent away, before its first attempt was answered:
 * OpenSSH's "noauth". Costs its source a little, so that one host opening and
 * dropping connections as fast as it can is soon refused at accept. */
static void session_login_abandoned(struct session *s, const char *why)
{
	if (session_logging_in(s) && s->login != NULL && s->login->failures == 0)
		session_penalise(s, PENALTY_NOAUTH, why);
}

/* Answers a failed attempt: the dialogue again, or the end. */
static void session_answer_failure(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct login *login = s->login;

	if (login->failures >= cfg->login.max_attempts) {
		session_finish(s, cfg->login.failure_message, "too many failed logins");
		return;
	}
	login_restart(login);
	session_enter(s, SESSION_LOGIN);
	if (session_queue(s, cfg->login.failure_message) < 0 ||
	    session_queue(s, login_first_prompt(&cfg->login)) < 0) {
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
 * failure_delay), which slows guessing and blurs any timing left, plus pad_ms
 * for a check that ended sooner than a real one would have. */
static void session_delay_failure(struct session *s, uint64_t pad_ms)
{
	uint64_t d = session_cfg(s)->login.failure_delay_ms;
	uint32_t r = 0;

	if (d == 0 && pad_ms == 0) {
		session_answer_failure(s);
		return;
	}
	if (d > 0) {
		if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
			r = (uint32_t)loop_clock_ms() * 2654435761u;
		d = d / 2 + (d * (r % 1000u)) / 1000u;
	}
	d += pad_ms;
	if (loop_timer_arm(session_loop(s), &s->login->delay, d, session_failure_delay_done, s) < 0)
		session_answer_failure(s);
}

/* timeouts.session: the session's whole life is up, whatever it does. */
static void session_life_timeout(struct loop_timer *t)
{
	session_close(t->arg, "session time limit reached");
}

/* The client logged in: what it sent behind its last answer goes upstream. */
static void session_logged_in(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct login *login = s->login;
	const char *early;
	size_t n;

	s->user = strdup(login->job.user);
	if (s->user == NULL) {
		session_close(s, "out of memory");
		return;
	}
	session_log_login(s, LOG_EV_LOGIN_OK, s->user, NULL);
	/* Counted whatever the limit, so that a reload that sets one finds the
	 * sessions already open. */
	if (!gateway_user_begin(s->gw, s->user)) {
		session_finish(s, "Too many sessions for this user.\n",
			       "max_sessions_per_user reached");
		return;
	}
	s->counted_user = true;
	if (s->gw->grants_passes)
		passes_grant(s->set->env.passes, cfg->name, &s->peer.sa, s->user,
			     s->target >= 0 ? cfg->targets[s->target].name : NULL,
			     loop_now_ms(session_loop(s)));
	if (cfg->session_timeout_ms > 0 &&
	    loop_timer_arm(session_loop(s), &s->life, cfg->session_timeout_ms, session_life_timeout,
			   s) < 0) {
		session_close(s, "out of memory");
		return;
	}
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
	upstream_choice_begin(&s->choice,
			      s->target >= 0 ? s->gw->target_pools[s->target] : s->gw->pool,
			      &s->peer.sa, loop_now_ms(session_loop(s)));
	session_connect_next(s);
}

/* A failed attempt: logged with why, counted against the source, answered
 * after the failure delay (and pad_ms). */
static void session_login_failed(struct session *s, const char *why, uint64_t pad_ms)
{
	s->login->failures++;
	session_log_login(s, LOG_EV_LOGIN_FAILED, s->login->job.user, why);
	session_penalise(s, PENALTY_AUTHFAIL, "failed login");
	session_delay_failure(s, pad_ms);
}

static void session_auth_done(struct loop_task *t)
{
	struct session *s = t->arg;
	struct login *login = s->login;

	/* Closed or timed out (grace time) while the check ran: nobody waits for
	 * the answer, but a wrong password still counts against the source. */
	if (s->state != SESSION_VERIFYING) {
		if (login->job.result == AUTH_DENIED) {
			char why[96];

			snprintf(why, sizeof(why), "%s (client gone)", login->job.denial);
			session_log_login(s, LOG_EV_LOGIN_FAILED, login->job.user, why);
			session_penalise(s, PENALTY_AUTHFAIL, "failed login");
		}
		session_release(s);
		return;
	}
	s->holds--;
	if (s->set->env.stats != NULL)
		stats_observe_check(s->set->env.stats, auth_clock_us() - login->job.submitted_us);
	switch (login->job.result) {
	case AUTH_OK: {
		size_t len;
		const char *groups = session_groups(s, &len);

		session_authenticated(s, groups, len);
		return;
	}
	case AUTH_DENIED:
	case AUTH_ERROR:
		/* A hash crypt cannot use answers as a wrong password would: the
		 * client must not learn that this user name exists. */
		session_login_failed(s,
				     login->job.result == AUTH_DENIED
					     ? login->job.denial
					     : "password check failed: the user's hash is unusable",
				     0);
		return;
	case AUTH_NO_CREDENTIALS:
		session_finish(s, "Service unavailable.\n", "gateway removed by a reload");
		return;
	case AUTH_TEMPFAIL:
		break;
	}
	session_finish(s, "Service unavailable.\n", "password check failed");
}

/* ---- targets -------------------------------------------------------------- */

/* Who may reach target i. */
static void session_target_access(struct session *s, int i)
{
	const struct config_target *t = &session_cfg(s)->targets[i];

	s->access = (struct credentials_access){t->users, t->n_users, t->groups, t->n_groups};
}

/* login.target = "suffix": "alice@db2" names user alice and target db2 (the
 * last '@', and only if a target has that name: "bob@example.com" stays a
 * user name). No target named is no target permitted: the check fails like
 * a wrong password. */
static void session_take_suffix(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	char *user = s->login->job.user, *at = strrchr(user, '@');

	s->target = -1;
	s->access = (struct credentials_access){0};
	for (size_t i = 0; at != NULL && i < cfg->n_targets; i++) {
		if (strcmp(at + 1, cfg->targets[i].name) == 0) {
			s->target = (int)i;
			*at = '\0';
			session_target_access(s, s->target);
			break;
		}
	}
}

/* Logged in: with a menu of targets, the user picks one first. groups: the
 * user's ("a,b"), from the credentials file or NSS. */
static void session_authenticated(struct session *s, const char *groups, size_t groups_len)
{
	const struct config_gateway *cfg = session_cfg(s);
	const char *user = s->login->job.user;
	int permitted[64], n = 0;
	char line[128];

	if (cfg->login.target != CONFIG_TARGET_MENU) {
		session_logged_in(s);
		return;
	}
	for (size_t i = 0; i < cfg->n_targets && n < 64; i++) {
		session_target_access(s, (int)i);
		if (credentials_access_allows(&s->access, user, groups, groups_len))
			permitted[n++] = (int)i;
	}
	if (n == 0) {
		session_finish(s, "Not permitted.\n", "no target permitted for this user");
		return;
	}
	if (n == 1) {
		s->target = permitted[0];
		session_logged_in(s);
		return;
	}
	for (int k = 0; k < n; k++) {
		snprintf(line, sizeof(line), "%s%3d) %s\n", k == 0 ? "Targets:\n" : "", k + 1,
			 cfg->targets[permitted[k]].name);
		if (session_queue(s, line) < 0) {
			session_close(s, "out of memory");
			return;
		}
	}
	if (session_queue(s, cfg->login.target_prompt) < 0) {
		session_close(s, "out of memory");
		return;
	}
	s->target = -1;
	login_await_target(s->login);
	session_enter(s, SESSION_LOGIN);
	session_login_input(s);
}

/* The menu's answer: a number of the list, or a name; anything else, or a
 * target not the user's, is "not permitted". */
static void session_pick_target(struct session *s, const char *groups, size_t groups_len)
{
	const struct config_gateway *cfg = session_cfg(s);
	const char *answer = s->login->answer, *user = s->login->job.user;
	char *end;
	long k = strtol(answer, &end, 10);
	int seen = 0;

	for (size_t i = 0; i < cfg->n_targets; i++) {
		session_target_access(s, (int)i);
		if (!credentials_access_allows(&s->access, user, groups, groups_len))
			continue;
		seen++;
		if ((end != answer && *end == '\0' && k == seen) ||
		    strcmp(answer, cfg->targets[i].name) == 0) {
			s->target = (int)i;
			session_logged_in(s);
			return;
		}
	}
	session_finish(s, "Not permitted.\n", "target not permitted");
}

/* The user's groups for targets: the file's, or NSS's through PAM. */
static const char *session_groups(struct session *s, size_t *len)
{
	struct credentials_info info;

	if (s->pam != NULL) {
		*len = strlen(s->pam->groups);
		return s->pam->groups;
	}
	if (credentials_user_info(s->gw->creds, s->login->job.user, &info) && info.groups != NULL) {
		*len = info.groups_len;
		return info.groups;
	}
	*len = 0;
	return NULL;
}

/* Every step is answered: the check runs off the loop. */
static void session_submit_check(struct session *s)
{
	struct auth_job *job = &s->login->job;

	if (session_cfg(s)->login.target == CONFIG_TARGET_SUFFIX) {
		session_take_suffix(s);
		job->target = &s->access;
	}
	memcpy(&job->peer, &s->peer, sizeof(s->peer));
	job->slot = s->gw->counters->creds_now;
	job->reply_loop = session_loop(s);
	job->done = session_auth_done;
	job->arg = s;
	session_enter(s, SESSION_VERIFYING);
	if (auth_pool_submit(s->set->env.auth, job) < 0) {
		explicit_bzero(job->password, sizeof(job->password));
		session_finish(s, "Service busy, try again later.\n", "password check queue full");
		return;
	}
	s->holds++;
}

/* ---- PAM ------------------------------------------------------------------ */

/* The transaction's end: as a password check's, with PAM's own words. */
static void session_pam_done(struct session *s, struct pamauth_job *job)
{
	struct login *login = s->login;
	uint64_t floor;

	switch (job->result) {
	case PAMAUTH_OK:
		if (job->pam_user[0] != '\0')
			memcpy(login->job.user, job->pam_user, sizeof(login->job.user));
		/* What PAM says on success ("Last login: ...") precedes ours. */
		if (job->text[0] != '\0' && session_queue(s, job->text) < 0) {
			session_close(s, "out of memory");
			return;
		}
		/* A target named at the prompt is checked now, with the
		 * directory's groups: not permitted fails like the rest. */
		if (session_cfg(s)->login.target == CONFIG_TARGET_SUFFIX &&
		    !credentials_access_allows(&s->access, login->job.user, job->groups,
					       strlen(job->groups))) {
			floor = pamauth_failure_floor_ms(s->set->env.pam);
			session_login_failed(s, "target not permitted",
					     floor > job->tail_ms ? floor - job->tail_ms : 0);
			return;
		}
		session_authenticated(s, job->groups, strlen(job->groups));
		return;
	case PAMAUTH_DENIED:
	case PAMAUTH_ERROR:
		/* Whatever PAM said about this failure stays unsaid: every failure
		 * looks the same. It ends no sooner than the slowest recent check. */
		floor = pamauth_failure_floor_ms(s->set->env.pam);
		session_login_failed(s, job->denial,
				     floor > job->tail_ms ? floor - job->tail_ms : 0);
		return;
	case PAMAUTH_CHANGE_PASSWORD:
		session_log_login(s, LOG_EV_LOGIN_FAILED, login->job.user, job->denial);
		session_finish(s, "Your password has expired: change it, then log in again.\n",
			       "password change required");
		return;
	case PAMAUTH_CANCELLED:
		break;
	}
	session_finish(s, "Login timed out.\n", job->denial);
}

/* Runs on the session's loop: PAM asks something, or is done. */
static void session_pam_event(struct pamauth_job *job, enum pamauth_event ev)
{
	struct session *s = job->arg;

	if (ev == PAMAUTH_PROMPT) {
		/* Closed meanwhile: the cancel is on its way to PAM. */
		if (s->state != SESSION_VERIFYING)
			return;
		if (session_queue(s, job->text) < 0) {
			session_close(s, "out of memory");
			return;
		}
		login_await_pam(s->login);
		session_enter(s, SESSION_LOGIN);
		/* Writes the prompt and takes an answer typed ahead. */
		session_login_input(s);
		return;
	}
	s->pam_busy = false;
	if (s->state != SESSION_VERIFYING) {
		if (job->result == PAMAUTH_DENIED) {
			session_log_login(s, LOG_EV_LOGIN_FAILED, job->user,
					  "bad credentials (client gone)");
			session_penalise(s, PENALTY_AUTHFAIL, "failed login");
		}
		session_release(s);
		return;
	}
	s->holds--;
	session_pam_done(s, job);
}

/* The user name is in: PAM takes the dialogue from here. */
static void session_start_pam(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct pamauth_job *job = s->pam;
	char port[8];

	if (job == NULL) {
		job = s->pam = calloc(1, sizeof(*job));
		if (job == NULL) {
			session_close(s, "out of memory");
			return;
		}
	}
	job->reply_loop = session_loop(s);
	job->event = session_pam_event;
	job->arg = s;
	job->service = cfg->pam_service;
	job->config_dir = cfg->pam_config_dir_path;
	if (cfg->login.target == CONFIG_TARGET_SUFFIX)
		session_take_suffix(s);
	memcpy(job->user, s->login->job.user, sizeof(job->user));
	session_log_fields(s, job->rhost, port, sizeof(job->rhost));
	/* No answer is awaited past the grace time (the timer ends the session
	 * then, and the cancel reaches PAM). */
	job->deadline_ms = cfg->login.grace_time_ms > 0 ? s->started_ms + cfg->login.grace_time_ms
							: loop_clock_ms() + 24 * 3600 * 1000u;
	session_enter(s, SESSION_VERIFYING);
	if (pamauth_submit(s->set->env.pam, job) < 0) {
		session_finish(s, "Service busy, try again later.\n", "PAM queue full");
		return;
	}
	s->holds++;
	s->pam_busy = true;
}

/* The client's answer to PAM's prompt. */
static void session_answer_pam(struct session *s)
{
	char *answer = s->login->job.password;

	session_enter(s, SESSION_VERIFYING);
	pamauth_answer(s->set->env.pam, s->pam, answer, strlen(answer));
	explicit_bzero(answer, sizeof(s->login->job.password));
}

/* Acts on one login line; what it answers is queued, not yet written. */
static void session_on_line(struct session *s, char *line, size_t len)
{
	const char *prompt;

	switch (login_take_line(s->login, &session_cfg(s)->login, line, len, &prompt)) {
	case LOGIN_ASK:
		if (session_queue(s, prompt) < 0)
			session_close(s, "out of memory");
		return;
	case LOGIN_CHECK:
		session_submit_check(s);
		return;
	case LOGIN_TOO_EMPTY:
		session_login_abandoned(s, "too many empty login lines");
		session_finish(s, "\nToo many empty lines.\n", "too many empty login lines");
		return;
	case LOGIN_PAM_START:
		session_start_pam(s);
		return;
	case LOGIN_PAM_ANSWER:
		session_answer_pam(s);
		return;
	case LOGIN_TARGET_ANSWER: {
		size_t glen;
		const char *groups = session_groups(s, &glen);

		session_pick_target(s, groups, glen);
		return;
	}
	}
}

/* Reads and acts on login lines until input runs dry, the state moves on or
 * the wakeup's budget is spent (then the session yields and goes on after the
 * loop's other events and timers). The answers to everything read leave in
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
			int w = relay_flush(&s->down, &s->client, &s->c.wr);

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
		if (!s->c.rd)
			break;
		if (received >= SESSION_LOGIN_BUDGET) {
			session_yield(s);
			break;
		}
		room = line_space(in, &at);
		n = transport_recv(&s->client, at, room);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				s->c.rd = false;
				break;
			}
			session_login_abandoned(s, "client reset during login");
			session_close(s, "client reset during login");
			return;
		}
		if (n == 0) {
			/* A client that half-closed after its answers (a script
			 * piped into nc) still reads: what was answered goes first. */
			if (s->down.len > 0)
				(void)relay_flush(&s->down, &s->client, &s->c.wr);
			session_login_abandoned(s, "client closed during login");
			session_close(s, "client closed during login");
			return;
		}
		received += (size_t)n;
		line_commit(in, (size_t)n);
	}
	if ((session_logging_in(s) || s->state == SESSION_VERIFYING) && s->down.len > 0 &&
	    relay_flush(&s->down, &s->client, &s->c.wr) < 0)
		session_client_write_failed(s);
}

/* ---- upstream ------------------------------------------------------------ */

static void session_log_upstream_failure(const struct session *s, const char *what)
{
	char addr[NET_ADDRSTRLEN], port[8];

	if (s->user == NULL && !session_log_unauthenticated(s, LOGRATE_UNREACHABLE))
		return;
	session_log_fields(s, addr, port, sizeof(addr));
	log_event(LOG_WARNING, LOG_EV_UPSTREAM_UNREACHABLE, "upstream connect failed",
		  LOG_FIELDS({"SOCKGATE_GATEWAY", session_cfg(s)->name}, {"SOCKGATE_USER", s->user},
			     {"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
			     {"UPSTREAM", s->choice.addr->text}, {"REASON", what},
			     {"SOCKGATE_SESSION", s->id}));
}

static void session_upstream_failed(struct session *s, const char *what)
{
	stats_inc(&s->gw->stats->upstream_connect_failures);
	session_log_upstream_failure(s, what);
	upstream_choice_failed(&s->choice, what, loop_now_ms(session_loop(s)));
	session_close_side(s, &s->upstream_io, &s->upstream);
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

/* Connects to the next upstream the choice offers (upstream.c). */
static void session_connect_next(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct loop *loop = session_loop(s);
	const struct pool_addr *a;

	while ((a = upstream_choice_next(&s->choice)) != NULL) {
		struct errbuf err;
		int fd = net_connect((const struct sockaddr *)&a->ss, a->len, 1, &err);

		if (fd < 0) {
			stats_inc(&s->gw->stats->upstream_connect_failures);
			session_log_upstream_failure(s, err.msg);
			upstream_choice_failed(&s->choice, err.msg, loop_now_ms(loop));
			continue;
		}
		transport_tcp(&s->upstream, fd);
		s->u = (struct readiness){false, false, false};
		if (loop_io_add(loop, &s->upstream_io, fd, SESSION_EVENTS, session_upstream_cb, s) <
		    0) {
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
			  LOG_FIELDS({"SOCKGATE_GATEWAY", cfg->name}, {"SOCKGATE_USER", s->user},
				     {"SOCKGATE_SESSION", s->id}));
	/* A plain relay says nothing of its own: the client just sees the close. */
	session_finish(s, cfg->authenticate ? "Service unavailable.\n" : NULL,
		       "no upstream reachable");
}

/* upstream_proxy_protocol: the header goes first, before any TLS, as
 * HAProxy's send-proxy does; it fits a fresh socket's buffer, so one send()
 * writes it whole or the upstream is no good. v2 carries the session's id, the
 * user, the gateway and the target, signed with the gateway's key if any. */
static int session_send_proxy_out(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	const struct sockaddr *dst = (const struct sockaddr *)&local;
	uint8_t buf[PROXY_V2_MAX + 64];
	ssize_t n;

	if (cfg->upstream_proxy_protocol == CONFIG_PROXY_OUT_NONE)
		return 0;
	if (s->have_local)
		dst = (const struct sockaddr *)&s->local;
	else if (getsockname(s->client.fd, (struct sockaddr *)&local, &len) < 0)
		return -1;
	if (cfg->upstream_proxy_protocol == CONFIG_PROXY_OUT_V1) {
		n = proxy_build_v1(&s->peer.sa, dst, (char *)buf, sizeof(buf));
	} else {
		struct proxy_out o = {
			.src = &s->peer.sa,
			.dst = dst,
			.unique_id = s->id,
			.user = s->user,
			.gateway = cfg->name,
			.target = s->choice.pool != NULL ? pool_target(s->choice.pool) : NULL,
			.user_tlv = cfg->upstream_proxy_protocol_user_tlv,
			.key = s->gw->proxy_key,
			.key_len = s->gw->proxy_key_len,
			.now = (uint64_t)time(NULL),
		};

		n = proxy_build_v2(&o, buf, sizeof(buf));
	}
	if (n <= 0 || send(s->upstream.fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
		return -1;
	return 0;
}

/* The upstream's TLS handshake, as far as the socket allows; the connect
 * timeout covers it. A failure tries the next upstream. */
static void session_upstream_handshake(struct session *s)
{
	char what[ERRBUF_LEN + 8];
	struct errbuf why;

	switch (tls_handshake(&s->upstream, &why)) {
	case TLS_DONE:
		s->upstream_handshake = false;
		s->u.rd = s->u.wr = true;
		session_connected(s);
		return;
	case TLS_WANT_READ:
	case TLS_WANT_WRITE:
		return;
	case TLS_FAILED:
		break;
	}
	s->upstream_handshake = false;
	snprintf(what, sizeof(what), "TLS: %s", why.msg);
	session_upstream_failed(s, what);
}

/* TCP is up: TLS over it, to the name upstream_tls.server_name gives, or the
 * host the upstream address was written with. */
static void session_upstream_tls(struct session *s)
{
	const struct config_upstream_tls *u = &session_cfg(s)->upstream_tls;
	char host[NET_HOSTLEN], port[NET_PORTLEN];
	struct errbuf err;
	int fd = s->upstream.fd;

	if (u->server_name != NULL)
		snprintf(host, sizeof(host), "%s", u->server_name);
	else if (net_split_hostport(s->choice.addr->text, 0, host, port, &err) < 0)
		snprintf(host, sizeof(host), "%s", s->choice.addr->resolved);
	s->upstream.ops = NULL; /* the TLS transport takes the socket over */
	if (transport_tls_client(&s->upstream, fd, s->gw->upstream_tls, host, &err) < 0) {
		loop_io_del(session_loop(s), &s->upstream_io);
		session_upstream_failed(s, err.msg);
		return;
	}
	s->upstream_handshake = true;
	session_upstream_handshake(s);
}

/* A direction whose destination the kernel encrypts (kTLS send) and whose
 * source is a plain socket needs no copy through user space: splice(). A TLS
 * source is always read through OpenSSL, which receives the records the
 * kernel decrypts, alerts and key updates included. */
static void session_choose_splice(struct session *s)
{
	struct tls_info client, upstream;
	bool client_tls = tls_describe(&s->client, &client);
	bool upstream_tls = tls_describe(&s->upstream, &upstream);

	/* A recording needs the bytes in user space. */
	s->splice_down = client_tls && client.ktls_send && !upstream_tls && s->rec == NULL;
	s->splice_up = upstream_tls && upstream.ktls_send && !client_tls && s->rec == NULL;
	if ((s->splice_down || s->splice_up) && !session_set_pipe(s->set))
		s->splice_down = s->splice_up = false;
}

static void session_record_up(struct relay_dir *d, const char *buf, size_t len)
{
	struct session *s = (struct session *)((char *)d - offsetof(struct session, up));

	recording_data(s->rec, true, buf, len, loop_now_ms(session_loop(s)));
}

static void session_record_down(struct relay_dir *d, const char *buf, size_t len)
{
	struct session *s = (struct session *)((char *)d - offsetof(struct session, down));

	recording_data(s->rec, false, buf, len, loop_now_ms(session_loop(s)));
}

/* record = {...}: from the relay's first byte on, so the login (and its
 * password) is never in it. A recording that cannot start leaves the session
 * unrecorded, and says so. */
static void session_start_recording(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct loop *loop = session_loop(s);
	char addr[NET_ADDRSTRLEN], port[8], client[NET_ADDRSTRLEN + 16];
	struct errbuf err;

	if (!cfg->record.enabled || s->set->env.recorder == NULL)
		return;
	session_log_fields(s, addr, port, sizeof(addr));
	snprintf(client, sizeof(client), strchr(addr, ':') != NULL ? "[%s]:%s" : "%s:%s", addr,
		 port);
	s->rec = recording_open(s->set->env.recorder, cfg->record.directory, cfg->record.max_bytes,
				cfg->record.max_total_bytes, s->id, cfg->name, s->user, client,
				s->choice.addr->text, time(NULL), loop_now_ms(loop), &err);
	if (s->rec == NULL) {
		log_event(LOG_ERR, LOG_EV_RECORDING, "session not recorded",
			  LOG_FIELDS({"SOCKGATE_GATEWAY", cfg->name}, {"SOCKGATE_SESSION", s->id},
				     {"REASON", err.msg}));
		return;
	}
	log_event(LOG_INFO, LOG_EV_RECORDING, "session recorded",
		  LOG_FIELDS({"SOCKGATE_GATEWAY", cfg->name}, {"SOCKGATE_USER", s->user},
			     {"SOCKGATE_SESSION", s->id},
			     {"SOCKGATE_RECORDING", recording_path(s->rec)}));
	/* What the client typed ahead of the relay is the session's first input. */
	if (s->up.len > 0)
		recording_data(s->rec, true, s->up.buf + s->up.off, s->up.len, loop_now_ms(loop));
	s->up.tap = session_record_up;
	s->down.tap = session_record_down;
}

static void session_connected(struct session *s)
{
	const struct config_gateway *cfg = session_cfg(s);
	struct loop *loop = session_loop(s);

	loop_timer_disarm(loop, &s->timer);
	s->connected = true;
	upstream_choice_connected(&s->choice);
	(void)net_set_nodelay(s->upstream.fd);
	(void)net_set_oobinline(s->upstream.fd);
	session_start_recording(s);
	session_choose_splice(s);
	session_carry(s);
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

/* ---- relaying and yielding ----------------------------------------------- */

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

static const char *session_errno_reason(struct session *s, int e, bool client)
{
	if (e == EPROTO) {
		/* A TLS side broke the protocol: OpenSSL's words say how. */
		const char *why = tls_error_reason(client ? &s->client : &s->upstream);
		char text[160];

		snprintf(text, sizeof(text), "%s TLS error: %s", client ? "client" : "upstream",
			 why != NULL ? why : "protocol error");
		/* A reason already made may be in use by now: keep it. */
		if (s->close_detail == NULL)
			s->close_detail = strdup(text);
		return s->close_detail != NULL ? s->close_detail
		       : client                ? "client TLS error"
					       : "upstream TLS error";
	}
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
	struct session_set *set = s->set;
	uint64_t moved = s->up.bytes + s->down.bytes;
	enum relay_status up, down;

	up = s->splice_up
		     ? relay_splice(&s->up, &s->client, &s->c.rd, s->c.drain, &s->upstream,
				    &s->u.wr, set->pipe, set->pipe_len, SESSION_RELAY_BUDGET)
		     : relay_pump(&s->up, &s->client, &s->c.rd, s->c.drain, &s->upstream, &s->u.wr,
				  set->scratch, set->env.scratch_len, SESSION_RELAY_BUDGET);
	if (up == RELAY_SRC_ERROR || up == RELAY_DST_ERROR) {
		int e = errno;

		/* The upstream is gone, but what it sent before it went (often
		 * the reason why) still waits in our socket: pass it on first. */
		if (up == RELAY_DST_ERROR) {
			s->u.rd = true;
			(void)relay_pump(&s->down, &s->upstream, &s->u.rd, true, &s->client,
					 &s->c.wr, set->scratch, set->env.scratch_len,
					 SESSION_RELAY_BUDGET);
		}
		session_close(s, session_errno_reason(s, e, up == RELAY_SRC_ERROR));
		return;
	}
	down = s->splice_down
		       ? relay_splice(&s->down, &s->upstream, &s->u.rd, s->u.drain, &s->client,
				      &s->c.wr, set->pipe, set->pipe_len, SESSION_RELAY_BUDGET)
		       : relay_pump(&s->down, &s->upstream, &s->u.rd, s->u.drain, &s->client,
				    &s->c.wr, set->scratch, set->env.scratch_len,
				    SESSION_RELAY_BUDGET);
	if (down == RELAY_SRC_ERROR || down == RELAY_DST_ERROR) {
		session_close(s, session_errno_reason(s, errno, down == RELAY_DST_ERROR));
		return;
	}
	s->active_ms = loop_now_ms(set->env.loop);
	if (s->up.bytes + s->down.bytes != moved) {
		auth_pool_note_relaying(set->env.auth, s->active_ms);
		session_count_bytes(s);
	}
	if (up == RELAY_FINISHED && down == RELAY_FINISHED) {
		session_close(s, "closed");
		return;
	}
	if (up == RELAY_YIELD || down == RELAY_YIELD)
		session_yield(s); /* more to move: let the other sessions run first */
}

/* ---- events -------------------------------------------------------------- */

/* What an epoll event says about one side's socket. */
static void session_note(struct readiness *r, uint32_t events)
{
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		r->rd = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI))
		r->drain = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		r->wr = true;
}

static void session_client_cb(struct loop_io *io, uint32_t events)
{
	struct session *s = io->arg;

	session_note(&s->c, events);
	transport_ready(&s->client, &s->c.rd, &s->c.wr);
	switch (s->state) {
	case SESSION_PROXY:
		if (events & (EPOLLHUP | EPOLLERR)) {
			session_close(s, "balancer reset before the PROXY header");
			return;
		}
		session_read_proxy(s);
		return;
	case SESSION_HANDSHAKE:
		session_handshake(s);
		return;
	case SESSION_LOGIN:
		/* A reset: nobody is left to answer, so lines that came with it
		 * start no password check. */
		if (events & (EPOLLHUP | EPOLLERR)) {
			session_client_gone(s);
			return;
		}
		if (s->down.len > 0 && relay_flush(&s->down, &s->client, &s->c.wr) < 0) {
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
		if (s->down.len > 0 && relay_flush(&s->down, &s->client, &s->c.wr) < 0)
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

	session_note(&s->u, events);
	transport_ready(&s->upstream, &s->u.rd, &s->u.wr);
	if (s->state == SESSION_CONNECTING && s->upstream_handshake) {
		session_upstream_handshake(s);
		return;
	}
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
		if (session_send_proxy_out(s) < 0) {
			session_upstream_failed(s, "cannot send the PROXY header");
			return;
		}
		if (s->gw->upstream_tls != NULL) {
			session_upstream_tls(s);
			return;
		}
		session_connected(s);
		return;
	}
	if (s->state == SESSION_RELAYING)
		session_relay(s);
}

/* ---- the whole set ------------------------------------------------------- */

void session_set_revoke(struct session_set *set, struct gateway *const *gws, size_t n_gws)
{
	struct session *s = set->list, *next;

	for (; s != NULL; s = next) {
		const struct gateway *now = NULL;
		char addr[NET_ADDRSTRLEN], port[8];
		const char *why;

		next = s->next;
		if (s->user == NULL ||
		    (s->state != SESSION_RELAYING && s->state != SESSION_CONNECTING))
			continue;
		for (size_t i = 0; i < n_gws && now == NULL; i++)
			if (strcmp(gws[i]->cfg->name, session_cfg(s)->name) == 0)
				now = gws[i];
		/* A gateway that is gone accepts nobody any more. A PAM gateway's
		 * users are the directory's: a reload does not judge them. */
		why = now == NULL ? "gateway removed"
		      : s->gw->creds == NULL
			      ? NULL
			      : credentials_revoked(s->gw->creds, now->creds, s->user, time(NULL));
		if (why == NULL)
			continue;
		session_log_fields(s, addr, port, sizeof(addr));
		log_event(LOG_NOTICE, LOG_EV_REVOKED, "access revoked",
			  LOG_FIELDS({"REMOTE_ADDR", addr}, {"REMOTE_PORT", port},
				     {"SOCKGATE_GATEWAY", session_cfg(s)->name},
				     {"SOCKGATE_USER", s->user}, {"REASON", why},
				     {"SOCKGATE_SESSION", s->id}));
		session_close(s, "access revoked");
	}
}

static bool session_matches(const struct session *s, const struct session_filter *f)
{
	uint8_t key[NET_ADDR_KEY_LEN];

	if (s->state == SESSION_CLOSED)
		return false;
	if (f->gateway != NULL && f->gateway[0] != '\0' &&
	    strcmp(f->gateway, session_cfg(s)->name) != 0)
		return false;
	if (f->user != NULL && f->user[0] != '\0' &&
	    (s->user == NULL || strcmp(f->user, s->user) != 0))
		return false;
	if (f->id != NULL && f->id[0] != '\0' && strcmp(f->id, s->id) != 0)
		return false;
	if (f->source != NULL &&
	    (!net_addr_key(&s->peer.sa, key) || !net_cidr_contains(f->source, key)))
		return false;
	return true;
}

void session_set_describe(struct session_set *set, const struct session_filter *f, struct table *t)
{
	uint64_t now = loop_now_ms(set->env.loop);

	for (const struct session *s = set->list; s != NULL; s = s->next) {
		char addr[NET_ADDRSTRLEN], port[8], client[NET_ADDRSTRLEN + 10], age[24], idle[24],
			in[24], out[24], tls[128], subject[256], tls_cell[400];
		const char *target = s->choice.pool != NULL ? pool_target(s->choice.pool) : NULL;
		const char *cells[SESSION_N_COLUMNS];

		if (!session_matches(s, f))
			continue;
		session_log_fields(s, addr, port, sizeof(addr));
		snprintf(client, sizeof(client), "%s%s%s:%s", strchr(addr, ':') ? "[" : "", addr,
			 strchr(addr, ':') ? "]" : "", port);
		snprintf(age, sizeof(age), "%llu",
			 (unsigned long long)(now - s->started_ms) / 1000);
		snprintf(idle, sizeof(idle), "%llu",
			 (unsigned long long)(now - s->active_ms) / 1000);
		snprintf(in, sizeof(in), "%llu", (unsigned long long)s->up.bytes);
		snprintf(out, sizeof(out), "%llu", (unsigned long long)s->down.bytes);
		cells[0] = s->id;
		cells[1] = session_cfg(s)->name;
		cells[2] = s->user;
		cells[3] = client;
		cells[4] = s->connected && s->choice.addr != NULL ? s->choice.addr->text : NULL;
		cells[5] = target;
		cells[6] = session_state_text(s);
		cells[7] = age;
		cells[8] = idle;
		cells[9] = in;
		cells[10] = out;
		cells[11] = session_tls_text(s, tls, sizeof(tls), subject, sizeof(subject));
		if (cells[11] != NULL && subject[0] != '\0') {
			snprintf(tls_cell, sizeof(tls_cell), "%s subject=%s", cells[11], subject);
			cells[11] = tls_cell;
		}
		(void)table_add(t, cells);
	}
}

unsigned session_set_kill(struct session_set *set, const struct session_filter *f,
			  const char *reason)
{
	struct session *s = set->list, *next;
	unsigned n = 0;

	for (; s != NULL; s = next) {
		next = s->next;
		if (!session_matches(s, f))
			continue;
		session_close(s, reason);
		n++;
	}
	return n;
}

void session_set_close_all(struct session_set *set, const char *reason)
{
	while (set->list != NULL)
		session_close(set->list, reason);
}
