/* penalty: per-source penalties and login counts (see penalty.h). A chained hash
 * table over a fixed pool of entries; an entry lives while its source serves a
 * penalty or has logins under way. */
#include "penalty.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PENALTY_NONE UINT32_MAX

struct penalty_entry {
	uint8_t key[17]; /* family, then the masked address */
	bool blocked;    /* reached min: refused until until_ms */
	uint32_t startups;
	uint32_t next; /* chain, or the free list */
	uint64_t until_ms;
};

struct penalty_table {
	pthread_mutex_t lock;
	struct penalty_settings set;
	struct net_cidr *exempt;
	struct penalty_entry *pool;
	uint32_t *buckets;
	uint32_t n_buckets; /* a power of two */
	uint32_t capacity, used, free_head;
	uint32_t generation; /* changes when the table starts afresh */
	uint64_t last_sweep_ms;
};

struct penalty_table *penalty_create(unsigned max_sources, struct errbuf *err)
{
	struct penalty_table *t = calloc(1, sizeof(*t));
	uint32_t nb = 64;

	if (t == NULL || max_sources == 0)
		goto oom;
	while (nb < max_sources && nb < (1u << 30))
		nb <<= 1;
	t->pool = calloc(max_sources, sizeof(*t->pool));
	t->buckets = malloc(nb * sizeof(*t->buckets));
	if (t->pool == NULL || t->buckets == NULL)
		goto oom;
	t->n_buckets = nb;
	t->capacity = max_sources;
	for (uint32_t i = 0; i < nb; i++)
		t->buckets[i] = PENALTY_NONE;
	for (uint32_t i = 0; i < max_sources; i++)
		t->pool[i].next = i + 1 < max_sources ? i + 1 : PENALTY_NONE;
	t->free_head = 0;
	t->generation = 1;
	pthread_mutex_init(&t->lock, NULL);
	return t;
oom:
	if (t != NULL) {
		free(t->pool);
		free(t->buckets);
		free(t);
	}
	errbuf_set(err, "out of memory for the penalty table");
	return NULL;
}

void penalty_free(struct penalty_table *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->exempt);
	free(t->pool);
	free(t->buckets);
	free(t);
}

/* Empties the table; tickets of the old generation no longer count. */
static void table_reset(struct penalty_table *t)
{
	for (uint32_t i = 0; i < t->n_buckets; i++)
		t->buckets[i] = PENALTY_NONE;
	for (uint32_t i = 0; i < t->capacity; i++)
		t->pool[i].next = i + 1 < t->capacity ? i + 1 : PENALTY_NONE;
	t->free_head = 0;
	t->used = 0;
	if (++t->generation == 0)
		t->generation = 1;
}

int penalty_configure(struct penalty_table *t, const struct penalty_settings *s, struct errbuf *err)
{
	struct net_cidr *ex = NULL;
	bool rekey;

	if (s->n_exempt > 0) {
		ex = malloc(s->n_exempt * sizeof(*ex));
		if (ex == NULL)
			return errbuf_set(err, "out of memory");
		memcpy(ex, s->exempt, s->n_exempt * sizeof(*ex));
	}
	pthread_mutex_lock(&t->lock);
	rekey = s->ipv4_bits != t->set.ipv4_bits || s->ipv6_bits != t->set.ipv6_bits ||
		s->n_exempt != t->set.n_exempt ||
		(s->n_exempt > 0 && memcmp(ex, t->exempt, s->n_exempt * sizeof(*ex)) != 0);
	if (rekey)
		table_reset(t);
	free(t->exempt);
	t->set = *s;
	t->exempt = ex;
	t->set.exempt = ex;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* The table key of sa under the current settings; false if exempt or unknown. */
static bool source_key(const struct penalty_table *t, const struct sockaddr *sa, uint8_t key[17])
{
	if (!net_addr_key(sa, key))
		return false;
	for (unsigned i = 0; i < t->set.n_exempt; i++)
		if (net_cidr_contains(&t->set.exempt[i], key))
			return false;
	net_addr_key_mask(key, key[0] == AF_INET ? t->set.ipv4_bits : t->set.ipv6_bits);
	return true;
}

static uint32_t key_hash(const uint8_t key[17])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (int i = 0; i < 17; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

static bool entry_idle(const struct penalty_entry *e, uint64_t now_ms)
{
	return e->startups == 0 && e->until_ms <= now_ms;
}

/* Frees every idle entry: when the pool ran dry, before giving up on a source. */
static void table_sweep(struct penalty_table *t, uint64_t now_ms)
{
	for (uint32_t b = 0; b < t->n_buckets; b++) {
		uint32_t *link = &t->buckets[b], i;

		while ((i = *link) != PENALTY_NONE) {
			struct penalty_entry *e = &t->pool[i];

			if (!entry_idle(e, now_ms)) {
				link = &e->next;
				continue;
			}
			*link = e->next;
			e->next = t->free_head;
			t->free_head = i;
			t->used--;
		}
	}
}

/* Finds key's entry (creating it if create), dropping idle ones on the way. */
static struct penalty_entry *table_get(struct penalty_table *t, const uint8_t key[17],
				       uint64_t now_ms, bool create)
{
	uint32_t *link = &t->buckets[key_hash(key) & (t->n_buckets - 1)];
	uint32_t i;

	while ((i = *link) != PENALTY_NONE) {
		struct penalty_entry *e = &t->pool[i];

		if (memcmp(e->key, key, 17) == 0)
			return e;
		if (entry_idle(e, now_ms)) {
			*link = e->next;
			e->next = t->free_head;
			t->free_head = i;
			t->used--;
			continue;
		}
		link = &e->next;
	}
	if (!create)
		return NULL;
	/* A full table swept at most once a second: under a flood of sources,
	 * the sweep must not become the attack. */
	if (t->free_head == PENALTY_NONE && now_ms - t->last_sweep_ms >= 1000) {
		t->last_sweep_ms = now_ms;
		table_sweep(t, now_ms);
		link = &t->buckets[key_hash(key) & (t->n_buckets - 1)];
		while (*link != PENALTY_NONE)
			link = &t->pool[*link].next;
	}
	if (t->free_head == PENALTY_NONE)
		return NULL; /* full: sources beyond the table are not tracked */
	i = t->free_head;
	t->free_head = t->pool[i].next;
	t->used++;
	memset(&t->pool[i], 0, sizeof(t->pool[i]));
	memcpy(t->pool[i].key, key, 17);
	t->pool[i].next = *link;
	*link = i;
	return &t->pool[i];
}

/* A block ends when the penalty runs out. */
static bool entry_blocked(struct penalty_entry *e, uint64_t now_ms)
{
	if (e->blocked && e->until_ms <= now_ms)
		e->blocked = false;
	return e->blocked;
}

enum penalty_verdict penalty_admit(struct penalty_table *t, const struct sockaddr *sa,
				   uint64_t now_ms, uint64_t *remaining_ms, uint32_t *ticket)
{
	enum penalty_verdict v = PENALTY_ALLOW;
	struct penalty_entry *e;
	uint8_t key[17];

	*ticket = 0;
	pthread_mutex_lock(&t->lock);
	if (!source_key(t, sa, key))
		goto out;
	e = table_get(t, key, now_ms, t->set.per_source_startups > 0);
	if (e == NULL)
		goto out;
	if (t->set.enabled && entry_blocked(e, now_ms)) {
		*remaining_ms = e->until_ms - now_ms;
		v = PENALTY_REFUSE_PENALISED;
		goto out;
	}
	if (t->set.per_source_startups > 0) {
		if (e->startups >= t->set.per_source_startups) {
			v = PENALTY_REFUSE_STARTUPS;
		} else {
			e->startups++;
			*ticket = t->generation;
		}
	}
out:
	pthread_mutex_unlock(&t->lock);
	return v;
}

void penalty_login_done(struct penalty_table *t, const struct sockaddr *sa, uint32_t ticket)
{
	struct penalty_entry *e;
	uint8_t key[17];

	pthread_mutex_lock(&t->lock);
	if (ticket == t->generation && source_key(t, sa, key)) {
		e = table_get(t, key, 0, false);
		if (e != NULL && e->startups > 0)
			e->startups--;
	}
	pthread_mutex_unlock(&t->lock);
}

bool penalty_record(struct penalty_table *t, const struct sockaddr *sa, enum penalty_event ev,
		    uint64_t now_ms, uint64_t *until_ms)
{
	struct penalty_entry *e;
	uint8_t key[17];
	uint64_t base, add;
	bool was, now_blocked = false;

	pthread_mutex_lock(&t->lock);
	if (!t->set.enabled || !source_key(t, sa, key))
		goto out;
	e = table_get(t, key, now_ms, true);
	if (e == NULL)
		goto out;
	was = entry_blocked(e, now_ms);
	add = ev == PENALTY_GRACE    ? t->set.grace_ms
	      : ev == PENALTY_NOAUTH ? t->set.noauth_ms
				     : t->set.authfail_ms;
	/* Penalties add up while they last; what has expired is forgotten. */
	base = e->until_ms > now_ms ? e->until_ms : now_ms;
	e->until_ms = base + add;
	if (e->until_ms > now_ms + t->set.max_ms)
		e->until_ms = now_ms + t->set.max_ms;
	if (e->until_ms - now_ms >= t->set.min_ms && add > 0)
		e->blocked = true;
	*until_ms = e->until_ms;
	now_blocked = e->blocked && !was;
out:
	pthread_mutex_unlock(&t->lock);
	return now_blocked;
}

unsigned penalty_active(struct penalty_table *t, uint64_t now_ms)
{
	unsigned n = 0;

	pthread_mutex_lock(&t->lock);
	for (uint32_t b = 0; b < t->n_buckets; b++)
		for (uint32_t i = t->buckets[b]; i != PENALTY_NONE; i = t->pool[i].next)
			if (entry_blocked(&t->pool[i], now_ms))
				n++;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void penalty_format_source(struct penalty_table *t, const struct sockaddr *sa, char *buf,
			   unsigned len)
{
	uint8_t key[NET_ADDR_KEY_LEN];
	char text[INET6_ADDRSTRLEN];
	unsigned bits;

	if (!net_addr_key(sa, key)) {
		snprintf(buf, len, "?");
		return;
	}
	pthread_mutex_lock(&t->lock);
	bits = key[0] == AF_INET ? t->set.ipv4_bits : t->set.ipv6_bits;
	pthread_mutex_unlock(&t->lock);
	net_addr_key_mask(key, bits);
	inet_ntop(key[0], key + 1, text, sizeof(text));
	snprintf(buf, len, "%s/%u", text, bits);
}

void penalty_list(struct penalty_table *t, uint64_t now_ms, penalty_list_fn *fn, void *arg)
{
	pthread_mutex_lock(&t->lock);
	for (uint32_t b = 0; b < t->n_buckets; b++) {
		for (uint32_t i = t->buckets[b]; i != PENALTY_NONE; i = t->pool[i].next) {
			struct penalty_entry *e = &t->pool[i];
			char text[INET6_ADDRSTRLEN], source[INET6_ADDRSTRLEN + 8];

			if (e->until_ms <= now_ms)
				continue;
			inet_ntop(e->key[0], e->key + 1, text, sizeof(text));
			snprintf(source, sizeof(source), "%s/%u", text,
				 e->key[0] == AF_INET ? t->set.ipv4_bits : t->set.ipv6_bits);
			fn(source, entry_blocked(e, now_ms), e->until_ms - now_ms, e->startups,
			   arg);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

bool penalty_lift(struct penalty_table *t, const struct sockaddr *sa, uint64_t now_ms)
{
	uint8_t key[NET_ADDR_KEY_LEN];
	struct penalty_entry *e;
	bool lifted = false;

	pthread_mutex_lock(&t->lock);
	if (source_key(t, sa, key) && (e = table_get(t, key, now_ms, false)) != NULL &&
	    e->until_ms > now_ms) {
		e->until_ms = now_ms;
		e->blocked = false;
		lifted = true;
	}
	pthread_mutex_unlock(&t->lock);
	return lifted;
}
