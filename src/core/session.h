/* session: one client connection from accept to close, as an explicit state
 * machine: USERNAME -> PASSWORD -> VERIFYING -> CONNECTING -> RELAYING, with
 * DRAINING (a final message, then a lingering close) and CLOSED. Every state
 * change goes through session_enter(); every end goes through session_close(),
 * which writes the session's one summary log line. A session lives on one
 * worker's thread; idle, it holds no buffer. */
#ifndef SOCKGATE_SESSION_H
#define SOCKGATE_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gateway.h"
#include "worker.h"

enum session_state {
	SESSION_NEW = 0,
	SESSION_USERNAME,
	SESSION_PASSWORD,
	SESSION_VERIFYING,
	SESSION_CONNECTING,
	SESSION_RELAYING,
	SESSION_DRAINING,
	SESSION_CLOSED,
};

struct session;

/* Wraps an accepted, non-blocking socket. Takes over fd and a reference to gw
 * and the gateway session slot (gateway_session_begin) the caller reserved.
 * Any thread. Returns NULL if out of memory (fd, reference and slot are then
 * still the caller's). */
struct session *session_create(struct gateway *gw, int fd, const struct sockaddr *peer,
			       socklen_t peerlen);

/* Hands s to w: the session starts (the username prompt) on w's thread.
 * source_ticket: from penalty_admit(), if it counted the connection against its
 * source's logins under way (else 0). */
void session_start(struct session *s, struct worker *w, uint32_t source_ticket);

/* On the worker's thread: ends the relayed sessions of users that gws (the
 * gateways of a new configuration) no longer accept with the same password. */
void session_revoke(struct worker *w, struct gateway *const *gws, size_t n_gws);

/* On the worker's thread: ends every session of w, logging reason. */
void session_close_all(struct worker *w, const char *reason);

const char *session_state_name(enum session_state st);

#endif
