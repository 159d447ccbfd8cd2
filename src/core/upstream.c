/* upstream: the choice of upstream address (see upstream.h). */
#include "upstream.h"

#include <string.h>

void upstream_choice_begin(struct upstream_choice *c, struct pool *pool,
			   const struct sockaddr *client, uint64_t now_ms)
{
	memset(c, 0, sizeof(*c));
	c->pool = pool;
	c->current = -1;
	c->n = pool_order(pool, client, now_ms, c->order, UPSTREAM_MAX_TRIES);
}

const struct pool_addr *upstream_choice_next(struct upstream_choice *c)
{
	if (c->next >= c->n) {
		c->current = -1;
		c->addr = NULL;
		return NULL;
	}
	c->current = (int)c->order[c->next++];
	c->addr = pool_addr(c->pool, (size_t)c->current);
	return c->addr;
}

void upstream_choice_failed(struct upstream_choice *c, const char *why, uint64_t now_ms)
{
	if (c->current >= 0)
		pool_failed(c->pool, (size_t)c->current, why, now_ms);
}

void upstream_choice_connected(struct upstream_choice *c)
{
	if (c->current >= 0 && !c->connected) {
		pool_connected(c->pool, (size_t)c->current);
		c->connected = true;
	}
}

void upstream_choice_end(struct upstream_choice *c)
{
	if (c->connected)
		pool_released(c->pool, (size_t)c->current);
	c->connected = false;
}

bool upstream_choice_adopt(struct upstream_choice *c, struct pool *pool, const char *text)
{
	memset(c, 0, sizeof(*c));
	c->pool = pool;
	c->current = -1;
	for (size_t i = 0; i < pool_size(pool); i++)
		if (strcmp(pool_addr(pool, i)->text, text) == 0) {
			c->current = (int)i;
			c->addr = pool_addr(pool, i);
			upstream_choice_connected(c);
			return true;
		}
	return false;
}
