/* pool: upstream pools shared by the workers (see pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "net.h"

struct pool_member {
	struct pool_addr addr;
	bool up;                /* lock */
	unsigned fails, passes; /* consecutive active check results (lock) */
	uint64_t retry_ms;      /* down without health checks: eligible again from then (lock) */
	unsigned backoff_ms;    /* the next back-off (lock) */
	unsigned active;        /* atomic: sessions connected through it */
};

struct pool {
	int refs;
	pthread_mutex_t lock;
	char gateway[65]; /* names are at most 64 bytes */
	char target[65];
	bool has_target, health;
	enum pool_balance balance;
	unsigned rr; /* atomic: round robin's next start */
	size_t n;
	struct pool_member m[];
};

struct pool *pool_create(const char *gateway, const char *target, const struct pool_addr *addrs,
			 size_t n, enum pool_balance balance, bool health, const struct pool *prev)
{
	struct pool *p = calloc(1, sizeof(*p) + n * sizeof(p->m[0]));

	if (p == NULL)
		return NULL;
	p->refs = 1;
	pthread_mutex_init(&p->lock, NULL);
	snprintf(p->gateway, sizeof(p->gateway), "%s", gateway);
	if (target != NULL) {
		snprintf(p->target, sizeof(p->target), "%s", target);
		p->has_target = true;
	}
	p->balance = balance;
	p->health = health;
	p->n = n;
	for (size_t i = 0; i < n; i++) {
		p->m[i].addr = addrs[i];
		p->m[i].up = true;
		p->m[i].backoff_ms = POOL_BACKOFF_MIN_MS;
		for (size_t j = 0; prev != NULL && j < prev->n; j++) {
			const struct pool_member *o = &prev->m[j];

			if (!net_sockaddr_equal((const struct sockaddr *)&o->addr.ss,
						(const struct sockaddr *)&addrs[i].ss))
				continue;
			p->m[i].up = o->up;
			p->m[i].fails = o->fails;
			p->m[i].passes = o->passes;
			p->m[i].retry_ms = o->retry_ms;
			p->m[i].backoff_ms = o->backoff_ms;
			p->m[i].active = __atomic_load_n(&o->active, __ATOMIC_RELAXED);
			break;
		}
	}
	return p;
}

struct pool *pool_ref(struct pool *p)
{
	__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void pool_unref(struct pool *p)
{
	if (p == NULL || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p);
}

size_t pool_size(const struct pool *p)
{
	return p->n;
}

const struct pool_addr *pool_addr(const struct pool *p, size_t i)
{
	return &p->m[i].addr;
}

const char *pool_target(const struct pool *p)
{
	return p->has_target ? p->target : NULL;
}

/* Logs a member going down or up (lock held: the lines come in order). */
static void pool_log(const struct pool *p, const struct pool_member *m, bool up, const char *why)
{
	log_event(up ? LOG_NOTICE : LOG_WARNING, LOG_EV_UPSTREAM_STATE,
		  up ? "upstream up" : "upstream down",
		  LOG_FIELDS({"SOCKGATE_GATEWAY", p->gateway},
			     {"SOCKGATE_TARGET", p->has_target ? p->target : NULL},
			     {"UPSTREAM", m->addr.text}, {"REASON", why}));
}

/* Eligible for a new session (lock held): up, or down without active checks
 * and past its back-off (the session is the check). */
static bool pool_eligible(const struct pool *p, const struct pool_member *m, uint64_t now_ms)
{
	return m->up || (!p->health && now_ms >= m->retry_ms);
}

size_t pool_order(struct pool *p, const struct sockaddr *client, uint64_t now_ms, unsigned *order,
		  size_t cap)
{
	size_t k = 0, start = 0;

	if (p->n == 0 || cap == 0)
		return 0;
	if (p->balance == POOL_ROUNDROBIN) {
		start = __atomic_fetch_add(&p->rr, 1, __ATOMIC_RELAXED) % p->n;
	} else if (p->balance == POOL_SOURCE) {
		uint8_t key[NET_ADDR_KEY_LEN];
		uint32_t h = 2166136261u;

		if (client != NULL && net_addr_key(client, key))
			for (size_t i = 0; i < sizeof(key); i++)
				h = (h ^ key[i]) * 16777619u;
		start = h % p->n;
	}
	pthread_mutex_lock(&p->lock);
	for (size_t j = 0; j < p->n && k < cap; j++) {
		size_t i = (start + j) % p->n;

		if (pool_eligible(p, &p->m[i], now_ms))
			order[k++] = (unsigned)i;
	}
	pthread_mutex_unlock(&p->lock);
	/* leastconn: fewest sessions first, the round-robin order among equals. */
	if (p->balance == POOL_LEASTCONN) {
		start = __atomic_fetch_add(&p->rr, 1, __ATOMIC_RELAXED);
		for (size_t a = 1; a < k; a++) {
			unsigned v = order[a];
			unsigned load = __atomic_load_n(&p->m[v].active, __ATOMIC_RELAXED);
			size_t b = a;

			while (b > 0 &&
			       __atomic_load_n(&p->m[order[b - 1]].active, __ATOMIC_RELAXED) > load)
				order[b] = order[b - 1], b--;
			order[b] = v;
		}
		if (k > 1) {
			/* Rotate the leading run of equal loads, so ties take turns. */
			unsigned low = __atomic_load_n(&p->m[order[0]].active, __ATOMIC_RELAXED);
			size_t run = 1;

			while (run < k &&
			       __atomic_load_n(&p->m[order[run]].active, __ATOMIC_RELAXED) == low)
				run++;
			for (size_t r = 0; r < start % run; r++) {
				unsigned first = order[0];

				memmove(order, order + 1, (run - 1) * sizeof(order[0]));
				order[run - 1] = first;
			}
		}
	}
	return k;
}

void pool_failed(struct pool *p, size_t i, const char *why, uint64_t now_ms)
{
	struct pool_member *m = &p->m[i];

	pthread_mutex_lock(&p->lock);
	if (m->up) {
		m->up = false;
		m->passes = 0;
		pool_log(p, m, false, why);
	}
	/* Without checks, a member that fails again waits longer before the
	 * next session tries it. */
	m->retry_ms = now_ms + m->backoff_ms;
	if (m->backoff_ms < POOL_BACKOFF_MAX_MS)
		m->backoff_ms = m->backoff_ms * 2 > POOL_BACKOFF_MAX_MS ? POOL_BACKOFF_MAX_MS
									: m->backoff_ms * 2;
	pthread_mutex_unlock(&p->lock);
}

void pool_connected(struct pool *p, size_t i)
{
	struct pool_member *m = &p->m[i];

	__atomic_add_fetch(&m->active, 1, __ATOMIC_RELAXED);
	/* Without active checks a session that got through is the check. */
	if (!p->health) {
		pthread_mutex_lock(&p->lock);
		if (!m->up) {
			m->up = true;
			pool_log(p, m, true, "a session connected");
		}
		m->backoff_ms = POOL_BACKOFF_MIN_MS;
		pthread_mutex_unlock(&p->lock);
	}
}

void pool_released(struct pool *p, size_t i)
{
	__atomic_sub_fetch(&p->m[i].active, 1, __ATOMIC_RELAXED);
}

void pool_checked(struct pool *p, size_t i, bool ok, const char *why, unsigned fall, unsigned rise)
{
	struct pool_member *m = &p->m[i];

	pthread_mutex_lock(&p->lock);
	if (ok) {
		m->fails = 0;
		if (!m->up && ++m->passes >= rise) {
			m->up = true;
			m->passes = 0;
			m->backoff_ms = POOL_BACKOFF_MIN_MS;
			pool_log(p, m, true, "health check passed");
		}
	} else {
		m->passes = 0;
		if (m->up && ++m->fails >= fall) {
			m->up = false;
			m->fails = 0;
			pool_log(p, m, false, why);
		}
	}
	pthread_mutex_unlock(&p->lock);
}

unsigned pool_down(struct pool *p)
{
	unsigned n = 0;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n; i++)
		n += !p->m[i].up;
	pthread_mutex_unlock(&p->lock);
	return n;
}

bool pool_member_up(struct pool *p, size_t i)
{
	bool up;

	pthread_mutex_lock(&p->lock);
	up = p->m[i].up;
	pthread_mutex_unlock(&p->lock);
	return up;
}
