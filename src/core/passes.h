/* passes: who logged in from where, for gateways with authenticate = "pass"
 * (binary clients that cannot answer a prompt). A successful login on a
 * gateway that grants passes records its client's address, user and target;
 * a pass gateway admits a later connection from the same address while the
 * record is younger than its pass.duration. An address, not a person: every
 * host behind the same NAT shares the pass (SECURITY.md). Thread-safe and
 * bounded: the oldest passes go first when it is full. */
#ifndef SOCKGATE_PASSES_H
#define SOCKGATE_PASSES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net.h"

#define PASSES_MAX_NAME 255

struct passes;

struct passes *passes_create(size_t max);
void passes_free(struct passes *p);

/* A login of user (to target, or NULL) from addr on gateway: a new pass, or
 * the old one renewed. */
void passes_grant(struct passes *p, const char *gateway, const struct sockaddr *addr,
		  const char *user, const char *target, uint64_t now_ms);

/* The pass addr holds from gateway if it was granted at most max_age_ms ago:
 * true, with its user and target ("" for none) copied out. */
bool passes_find(struct passes *p, const char *gateway, const struct sockaddr *addr,
		 uint64_t max_age_ms, uint64_t now_ms, char user[PASSES_MAX_NAME + 1],
		 char target[PASSES_MAX_NAME + 1]);

/* Ends the passes for which keep() says false (a reload that revoked their
 * user, or removed their gateway). Returns how many ended. */
typedef bool passes_keep_fn(const char *gateway, const char *user, void *arg);
size_t passes_filter(struct passes *p, passes_keep_fn *keep, void *arg);

/* Ends every pass older than max_age_ms (all gateways' longest duration). */
void passes_expire(struct passes *p, uint64_t max_age_ms, uint64_t now_ms);

size_t passes_count(struct passes *p);

/* Calls fn for every pass (under the lock: fn must not call back): its login
 * gateway, address, user, target ("" for none) and age. */
typedef void passes_list_fn(const char *gateway, const char *addr, const char *user,
			    const char *target, uint64_t age_ms, void *arg);
void passes_list(struct passes *p, uint64_t now_ms, passes_list_fn *fn, void *arg);

/* Ends the passes of addresses in range (NULL: any) and of user (NULL: any),
 * from any gateway. Returns how many ended. */
size_t passes_revoke(struct passes *p, const struct net_cidr *range, const char *user);

#endif
