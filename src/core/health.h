/* health: active TCP checks of a pool's members (health = { ... }), on a
 * loop's timers, off the login path: every interval each member gets a
 * connect that must complete within timeout; fall failures in a row mark it
 * down, rise passes bring it back (pool.h). */
#ifndef SOCKGATE_HEALTH_H
#define SOCKGATE_HEALTH_H

#include "config.h"
#include "errbuf.h"
#include "loop.h"
#include "pool.h"

struct health;

/* Starts checking pool (a reference is taken) on loop; the first round at
 * once. Returns NULL with err set. */
struct health *health_start(struct loop *loop, struct pool *pool, const struct config_health *cfg,
			    struct errbuf *err);
/* Stops every check and frees hc; on the loop's thread. */
void health_stop(struct health *hc);

#endif
