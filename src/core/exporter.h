/* exporter: what the daemon shows Prometheus. It owns the metrics' registry
 * (stats), runs the listener the configuration in force asks for (metrics =
 * { listen = ...; }), and hands the listener a snapshot of the gauges, which
 * only the main loop may read, once a second. */
#ifndef SOCKGATE_EXPORTER_H
#define SOCKGATE_EXPORTER_H

#include <stddef.h>

#include "config.h"
#include "errbuf.h"
#include "gateway.h"
#include "stats.h"

struct exporter;

/* No listener yet. Returns NULL with err set when out of memory. */
struct exporter *exporter_create(struct errbuf *err);
/* Stops the listener; every stats_gateway handed out goes with it. */
void exporter_free(struct exporter *e);

/* The counters gateways bump (gateway->stats). */
struct stats *exporter_stats(struct exporter *e);

/* Listens as m says (none when disabled): at start-up and after every reload.
 * The listener is restarted only when its addresses changed. Returns 0, or -1
 * with err set: then nothing listens until a later call succeeds. */
int exporter_configure(struct exporter *e, const struct config_metrics *m, struct errbuf *err);

/* The gauges as they are now: sessions of each gateway, its upstream
 * members' state, the check queue, the penalised sources. Main loop. */
void exporter_publish(struct exporter *e, struct gateway *const *gws, size_t n_gws,
		      unsigned check_queue, unsigned penalised_sources);

#endif
