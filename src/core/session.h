/* session: one client connection from accept to close, as an explicit state
 * machine: HANDSHAKE (with TLS) -> LOGIN (the dialogue's steps, login.h) ->
 * VERIFYING -> CONNECTING -> RELAYING, with DRAINING (a final message, then a lingering close) and
 * CLOSED. Every state change goes through session_enter(); every end goes through session_close(),
 * which writes the session's one summary log line. A session lives on one event loop's thread, in
 * that loop's session set; idle, it holds no buffer. */
#ifndef SOCKGATE_SESSION_H
#define SOCKGATE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "admission.h"
#include "auth.h"
#include "carry.h"
#include "errbuf.h"
#include "gateway.h"
#include "lograte.h"
#include "loop.h"
#include "pamauth.h"
#include "passes.h"
#include "penalty.h"
#include "record.h"
#include "stats.h"
#include "table.h"

enum session_state {
	SESSION_NEW = 0,
	SESSION_PROXY,     /* the balancer's PROXY header, before anything else */
	SESSION_HANDSHAKE, /* TLS, before the first prompt */
	SESSION_LOGIN,
	SESSION_VERIFYING,
	SESSION_CONNECTING,
	SESSION_RELAYING,
	SESSION_DRAINING,
	SESSION_CLOSED,
};

/* What the sessions of one event loop share. The loop's owner (a worker)
 * creates the set and keeps everything named here alive while it exists. */
struct session_env {
	struct loop *loop;
	struct auth_pool *auth;
	struct pamauth_pool *pam;
	struct admission *admission;     /* the sources PROXY headers name */
	struct passes *passes;           /* logins that admit binary clients later */
	struct penalty_table *penalties; /* shared by all loops; may be NULL */
	struct lograte *lograte;         /* shared by all loops; may be NULL */
	struct stats *stats;             /* the check-time histogram; may be NULL */
	struct recorder *recorder;       /* where record = {...} gateways record; may be NULL */
	struct carry *carry;             /* relayed sessions kept for a restart; may be NULL */
	size_t scratch_len;              /* the relay's read buffer, one per set */
};

struct session_set;
struct session;

/* The sessions of env->loop. Returns NULL with err set. */
struct session_set *session_set_create(const struct session_env *env, struct errbuf *err);
/* After session_set_close_all() and the loop's last round: frees the set. */
void session_set_free(struct session_set *set);

/* Any thread: open sessions of the set, and of those, the ones not yet
 * relaying (for the start-up limits and status lines). */
unsigned session_set_count(const struct session_set *set);
unsigned session_set_logging_in(const struct session_set *set);

/* Which sessions a control request means: NULL or "" matches all. */
struct session_filter {
	const char *gateway, *user, *id;
	const struct net_cidr *source; /* the client's address in it */
};

/* On the set's loop: a row per matching session into t, whose columns are
 * SESSION_COLUMNS (sockgatectl sessions). */
#define SESSION_COLUMNS                                                                            \
	"id", "gateway", "user", "client", "upstream", "target", "state", "#age_s", "#idle_s",     \
		"#bytes_in", "#bytes_out", "tls"
#define SESSION_N_COLUMNS 12
void session_set_describe(struct session_set *set, const struct session_filter *f, struct table *t);
/* On the set's loop: ends the matching sessions, logging reason. Returns how
 * many. */
unsigned session_set_kill(struct session_set *set, const struct session_filter *f,
			  const char *reason);

/* On the set's loop, at a planned stop under systemd's fd store: hands every
 * carried relayed session over to the next process (its record final, the
 * bytes it held saved, its sockets left in the store) and closes the others
 * (logging in: told to reconnect). */
void session_set_hand_over(struct session_set *set);

/* A session the process before relayed, from its record r (slot in the carry
 * file) and its two sockets, or NULL with why ("its upstream is no longer
 * configured", ...): then the sockets are still the caller's. Any thread. */
struct session *session_resume(struct gateway *gw, int client_fd, int upstream_fd,
			       const struct carry_record *r, int slot, const char **why);
/* A resumed session that will not start after all: freed, its gateway
 * reference dropped; its two sockets stay the caller's. */
void session_abandon(struct session *s);
/* Bytes the process before held for one direction (in: client to upstream),
 * written before anything read now. 0, or -1 when out of memory. */
int session_resume_held(struct session *s, bool in, const char *buf, size_t len);
/* Hands a resumed session to set: it relays on at once on the set's loop.
 * The ages say how long ago it was accepted and logged in. */
void session_start_resumed(struct session *s, struct session_set *set, uint64_t started_ago_ms,
			   uint64_t login_ago_ms);

/* On the set's loop: ends every session, logging reason. */
void session_set_close_all(struct session_set *set, const char *reason);

/* On the set's loop: ends the relayed sessions of users that gws (the
 * gateways of a new configuration) no longer accept with the same password. */
void session_set_revoke(struct session_set *set, struct gateway *const *gws, size_t n_gws);

/* Wraps an accepted, non-blocking socket. Takes over fd and a reference to gw
 * and the gateway session slot (gateway_session_begin) the caller reserved.
 * Any thread. Returns NULL if out of memory (fd, reference and slot are then
 * still the caller's). */
struct session *session_create(struct gateway *gw, int fd, const struct sockaddr *peer,
			       socklen_t peerlen);

/* Hands s to set: the session starts (its first prompt) on the set's loop.
 * Any thread. source_ticket: from penalty_admit(), if it counted the
 * connection against its source's logins under way (else 0). */
void session_start(struct session *s, struct session_set *set, uint32_t source_ticket);

#endif
