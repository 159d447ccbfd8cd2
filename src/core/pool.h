/* pool: one upstream pool (a gateway's upstream list, or one target's) as the
 * workers share it: which members are up, how many sessions each carries, and
 * where round robin stands. A member that refuses or times out is marked down
 * at once (passively) and is not chosen again until it passes rise active
 * checks (with health checks) or its back-off ends (without: then the next
 * session tries it, and its success brings it back). State changes are logged
 * once each. Thread-safe; a reload carries the state of members that stay. */
#ifndef SOCKGATE_POOL_H
#define SOCKGATE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net.h"

#define POOL_BACKOFF_MIN_MS 1000
#define POOL_BACKOFF_MAX_MS 30000

struct pool;

/* A member's address, as configured (text) and numeric. */
struct pool_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[NET_HOSTLEN + NET_PORTLEN + 4];
	char resolved[NET_ADDRSTRLEN];
};

/* The order members are tried in. */
enum pool_balance {
	POOL_FIRST = 0, /* as written: the first that is up */
	POOL_ROUNDROBIN,
	POOL_LEASTCONN, /* fewest sessions first */
	POOL_SOURCE,    /* by the client's address */
};

/* A pool of the n addresses (copied), named for logs by its gateway and target
 * (NULL: the gateway's own list). With prev (the same pool before a reload),
 * members at the same address keep their state. */
struct pool *pool_create(const char *gateway, const char *target, const struct pool_addr *addrs,
			 size_t n, enum pool_balance balance, bool health, const struct pool *prev);
struct pool *pool_ref(struct pool *p);
void pool_unref(struct pool *p);

size_t pool_size(const struct pool *p);
const struct pool_addr *pool_addr(const struct pool *p, size_t i);
const char *pool_target(const struct pool *p); /* NULL for the gateway's own */

/* The members to try for a new session, in order (the balance mode's):
 * indices into order, at most cap. 0 when every member is down. client: the
 * session's address (balance "source"). */
size_t pool_order(struct pool *p, const struct sockaddr *client, uint64_t now_ms, unsigned *order,
		  size_t cap);

/* What a session saw: member i refused or timed out (why, for the log); or it
 * accepted (and carries one more session until pool_released()). */
void pool_failed(struct pool *p, size_t i, const char *why, uint64_t now_ms);
void pool_connected(struct pool *p, size_t i);
void pool_released(struct pool *p, size_t i);

/* An active check of member i. */
void pool_checked(struct pool *p, size_t i, bool ok, const char *why, unsigned fall, unsigned rise);

/* Whether member i is up now. */
bool pool_member_up(struct pool *p, size_t i);

/* Members down now, for status lines. */
unsigned pool_down(struct pool *p);

#endif
