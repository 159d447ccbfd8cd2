/* upstream: which upstream address a logged-in session connects to, and which
 * next when one fails. Today the gateway's list in its order, each address
 * tried once; pools, balancing, health and per-user targets belong here. */
#ifndef SOCKGATE_UPSTREAM_H
#define SOCKGATE_UPSTREAM_H

#include "config.h"

/* One session's way through its gateway's upstreams. */
struct upstream_choice {
	const struct config_gateway *cfg;
	unsigned next; /* the index of the address to try next */
	const struct config_addr *current;
};

/* Starts the choice over cfg's upstreams. */
void upstream_choice_begin(struct upstream_choice *c, const struct config_gateway *cfg);

/* The address to try now, or NULL when every one was tried. */
const struct config_addr *upstream_choice_next(struct upstream_choice *c);

#endif
