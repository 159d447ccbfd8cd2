/* health: active checks of a pool (see health.h). */
#include "health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "net.h"

/* One member's check in flight. */
struct health_probe {
	struct health *hc;
	size_t i;
	int fd; /* -1: none in flight */
	struct loop_io io;
	struct loop_timer timeout;
};

struct health {
	struct loop *loop;
	struct pool *pool;
	struct config_health cfg;
	struct loop_timer tick;
	size_t n;
	struct health_probe probes[];
};

static void health_end(struct health_probe *pr, bool ok, const char *why)
{
	struct health *hc = pr->hc;

	loop_timer_disarm(hc->loop, &pr->timeout);
	if (pr->fd >= 0) {
		loop_io_del(hc->loop, &pr->io);
		close(pr->fd);
		pr->fd = -1;
	}
	pool_checked(hc->pool, pr->i, ok, why, hc->cfg.fall, hc->cfg.rise);
}

static void health_io(struct loop_io *io, uint32_t events)
{
	struct health_probe *pr = io->arg;
	char why[96];

	(void)events;
	if (net_connect_result(pr->fd) == 0) {
		health_end(pr, true, NULL);
		return;
	}
	snprintf(why, sizeof(why), "health check: %s", strerror(errno));
	health_end(pr, false, why);
}

static void health_timeout(struct loop_timer *t)
{
	health_end(t->arg, false, "health check: no answer within the timeout");
}

static void health_probe_start(struct health_probe *pr)
{
	struct health *hc = pr->hc;
	const struct pool_addr *a = pool_addr(hc->pool, pr->i);
	struct errbuf err;
	char why[ERRBUF_LEN + 16];

	if (pr->fd >= 0)
		return; /* the last one is still out: its timeout ends it */
	pr->fd = net_connect((const struct sockaddr *)&a->ss, a->len, 1, &err);
	if (pr->fd < 0) {
		snprintf(why, sizeof(why), "health check: %s", err.msg);
		pool_checked(hc->pool, pr->i, false, why, hc->cfg.fall, hc->cfg.rise);
		return;
	}
	if (loop_io_add(hc->loop, &pr->io, pr->fd, EPOLLOUT, health_io, pr) < 0 ||
	    loop_timer_arm(hc->loop, &pr->timeout, hc->cfg.timeout_ms, health_timeout, pr) < 0) {
		loop_io_del(hc->loop, &pr->io);
		close(pr->fd);
		pr->fd = -1;
	}
}

static void health_tick(struct loop_timer *t)
{
	struct health *hc = t->arg;

	for (size_t i = 0; i < hc->n; i++)
		health_probe_start(&hc->probes[i]);
	(void)loop_timer_arm(hc->loop, &hc->tick, hc->cfg.interval_ms, health_tick, hc);
}

struct health *health_start(struct loop *loop, struct pool *pool, const struct config_health *cfg,
			    struct errbuf *err)
{
	size_t n = pool_size(pool);
	struct health *hc = calloc(1, sizeof(*hc) + n * sizeof(hc->probes[0]));

	if (hc == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	hc->loop = loop;
	hc->pool = pool_ref(pool);
	hc->cfg = *cfg;
	hc->n = n;
	for (size_t i = 0; i < n; i++)
		hc->probes[i] = (struct health_probe){.hc = hc, .i = i, .fd = -1};
	if (loop_timer_arm(loop, &hc->tick, 0, health_tick, hc) < 0) {
		pool_unref(hc->pool);
		free(hc);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	return hc;
}

void health_stop(struct health *hc)
{
	if (hc == NULL)
		return;
	loop_timer_disarm(hc->loop, &hc->tick);
	for (size_t i = 0; i < hc->n; i++) {
		struct health_probe *pr = &hc->probes[i];

		loop_timer_disarm(hc->loop, &pr->timeout);
		if (pr->fd >= 0) {
			loop_io_del(hc->loop, &pr->io);
			close(pr->fd);
		}
	}
	pool_unref(hc->pool);
	free(hc);
}
