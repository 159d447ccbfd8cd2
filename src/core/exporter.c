/* exporter: the daemon's metrics listener and its gauges (see exporter.h). */
#include "exporter.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "pool.h"

struct exporter {
	struct stats *stats;
	struct metrics *metrics;    /* NULL: not listening */
	struct config_addr *listen; /* what metrics listens on (a copy) */
	size_t n_listen;
};

struct exporter *exporter_create(struct errbuf *err)
{
	struct exporter *e = calloc(1, sizeof(*e));

	if (e == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	e->stats = stats_create(err);
	if (e->stats == NULL) {
		free(e);
		return NULL;
	}
	return e;
}

static void exporter_stop(struct exporter *e)
{
	metrics_stop(e->metrics);
	e->metrics = NULL;
	free(e->listen);
	e->listen = NULL;
	e->n_listen = 0;
}

void exporter_free(struct exporter *e)
{
	if (e == NULL)
		return;
	exporter_stop(e);
	stats_free(e->stats);
	free(e);
}

struct stats *exporter_stats(struct exporter *e)
{
	return e->stats;
}

static bool exporter_same_addresses(const struct exporter *e, const struct config_metrics *m)
{
	if (e->n_listen != m->n_listen)
		return false;
	for (size_t i = 0; i < m->n_listen; i++)
		if (e->listen[i].len != m->listen[i].len ||
		    memcmp(&e->listen[i].ss, &m->listen[i].ss, m->listen[i].len) != 0)
			return false;
	return true;
}

int exporter_configure(struct exporter *e, const struct config_metrics *m, struct errbuf *err)
{
	size_t n = m->enabled ? m->n_listen : 0;
	const struct sockaddr **addrs;
	socklen_t *lens;

	if (e->metrics != NULL && m->enabled && exporter_same_addresses(e, m))
		return 0;
	/* The old listener goes first: the new one may want the same port. */
	exporter_stop(e);
	if (n == 0)
		return 0;
	addrs = calloc(n, sizeof(*addrs));
	lens = calloc(n, sizeof(*lens));
	e->listen = malloc(n * sizeof(*e->listen));
	if (addrs != NULL && lens != NULL && e->listen != NULL) {
		for (size_t i = 0; i < n; i++) {
			addrs[i] = (const struct sockaddr *)&m->listen[i].ss;
			lens[i] = m->listen[i].len;
		}
		e->metrics = metrics_start(e->stats, addrs, lens, n, err);
	} else {
		errbuf_set(err, "out of memory");
	}
	free(addrs);
	free(lens);
	if (e->metrics == NULL) {
		exporter_stop(e);
		return -1;
	}
	memcpy(e->listen, m->listen, n * sizeof(*e->listen));
	e->n_listen = n;
	for (size_t i = 0; i < n; i++)
		log_msg(LOG_INFO, "metrics: GET /metrics on %s, port %u", m->listen[i].text,
			metrics_port(e->metrics, i));
	return 0;
}

static size_t exporter_count_members(struct gateway *const *gws, size_t n_gws)
{
	size_t n = 0;

	for (size_t i = 0; i < n_gws; i++) {
		n += pool_size(gws[i]->pool);
		for (size_t t = 0; t < gws[i]->cfg->n_targets; t++)
			n += pool_size(gws[i]->target_pools[t]);
	}
	return n;
}

static void exporter_add_pool(struct stats_gauge_upstream *u, size_t *n, const char *gateway,
			      struct pool *p)
{
	const char *target = pool_target(p);

	for (size_t i = 0; i < pool_size(p); i++)
		u[(*n)++] = (struct stats_gauge_upstream){
			.gateway = gateway,
			.target = target != NULL ? target : "",
			.address = pool_addr(p, i)->text,
			.up = pool_member_up(p, i),
		};
}

void exporter_publish(struct exporter *e, struct gateway *const *gws, size_t n_gws,
		      unsigned check_queue, unsigned penalised_sources)
{
	struct stats_gauge_gateway *g = calloc(n_gws != 0 ? n_gws : 1, sizeof(*g));
	size_t n_members = exporter_count_members(gws, n_gws), n = 0;
	struct stats_gauge_upstream *u = calloc(n_members != 0 ? n_members : 1, sizeof(*u));
	struct stats_gauges snap;

	/* Out of memory: the last snapshot stays, a second older. */
	if (g != NULL && u != NULL) {
		for (size_t i = 0; i < n_gws; i++) {
			const struct gateway_counters *c = gws[i]->counters;
			unsigned sessions = __atomic_load_n(&c->sessions, __ATOMIC_RELAXED);
			unsigned logging_in = __atomic_load_n(&c->logging_in, __ATOMIC_RELAXED);

			g[i].name = gws[i]->cfg->name;
			g[i].logging_in = logging_in < sessions ? logging_in : sessions;
			g[i].relaying = sessions - g[i].logging_in;
			exporter_add_pool(u, &n, g[i].name, gws[i]->pool);
			for (size_t t = 0; t < gws[i]->cfg->n_targets; t++)
				exporter_add_pool(u, &n, g[i].name, gws[i]->target_pools[t]);
		}
		snap = (struct stats_gauges){
			.gateways = g,
			.n_gateways = n_gws,
			.upstreams = u,
			.n_upstreams = n,
			.check_queue = check_queue,
			.penalised_sources = penalised_sources,
		};
		(void)stats_set_gauges(e->stats, &snap);
	}
	free(g);
	free(u);
}
