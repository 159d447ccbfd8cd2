/* upstream: the choice of upstream address (see upstream.h). */
#include "upstream.h"

void upstream_choice_begin(struct upstream_choice *c, const struct config_gateway *cfg)
{
	c->cfg = cfg;
	c->next = 0;
	c->current = NULL;
}

const struct config_addr *upstream_choice_next(struct upstream_choice *c)
{
	c->current = c->next < c->cfg->n_upstream ? &c->cfg->upstream[c->next++] : NULL;
	return c->current;
}
