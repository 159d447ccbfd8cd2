/* upstream: which upstream address a session connects to, and which next when
 * one fails: the members of its pool (the gateway's list, or the chosen
 * target's) that are up, in the order of the gateway's balance mode, each
 * tried once. What each attempt shows is reported to the pool, so that the
 * next sessions skip a member that is down. */
#ifndef SOCKGATE_UPSTREAM_H
#define SOCKGATE_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "pool.h"

/* Attempts one session makes at most. */
#define UPSTREAM_MAX_TRIES 64

/* One session's way through a pool. */
struct upstream_choice {
	struct pool *pool; /* borrowed: the session's gateway holds it */
	unsigned order[UPSTREAM_MAX_TRIES];
	size_t n, next;
	int current; /* the member being tried or in use; -1 none */
	bool connected;
	const struct pool_addr *addr; /* current's address */
};

/* Starts the choice over pool for a client at client. */
void upstream_choice_begin(struct upstream_choice *c, struct pool *pool,
			   const struct sockaddr *client, uint64_t now_ms);

/* The address to try now, or NULL when every eligible one was tried (or none
 * was up to begin with). */
const struct pool_addr *upstream_choice_next(struct upstream_choice *c);

/* The current address refused or timed out (why, for the log). */
void upstream_choice_failed(struct upstream_choice *c, const char *why, uint64_t now_ms);
/* The current address accepted: the session goes on there. */
void upstream_choice_connected(struct upstream_choice *c);
/* A session connected by the process before (a restart): its member is the
 * pool's address written text, now in use. False if the pool has no such
 * address any more. */
bool upstream_choice_adopt(struct upstream_choice *c, struct pool *pool, const char *text);

/* The session is done with its upstream. */
void upstream_choice_end(struct upstream_choice *c);

#endif
