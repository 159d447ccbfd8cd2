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
	struct penalty_cidr *exempt;
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
	struct penalty_cidr *ex = NULL;
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

/* The family and address bytes of sa; IPv4-mapped IPv6 counts as IPv4. */
static int source_addr(const struct sockaddr *sa, uint8_t addr[16])
{
	if (sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
			&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(addr, a->s6_addr + 12, 4);
			return AF_INET;
		}
		memcpy(addr, a->s6_addr, 16);
		return AF_INET6;
	}
	return -1;
}

static void mask_bits(uint8_t *addr, unsigned len, unsigned bits)
{
	for (unsigned i = 0; i < len; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;

		addr[i] &= (uint8_t)(0xff00u >> keep);
	}
}

static bool cidr_contains(const struct penalty_cidr *c, int family, const uint8_t *addr)
{
	uint8_t a[16], b[16];
	unsigned len = family == AF_INET ? 4 : 16;

	if (c->family != family)
		return false;
	memcpy(a, addr, len);
	memcpy(b, c->addr, len);
	mask_bits(a, len, c->bits);
	mask_bits(b, len, c->bits);
	return memcmp(a, b, len) == 0;
}

/* The table key of sa under the current settings; false if exempt or unknown. */
static bool source_key(const struct penalty_table *t, const struct sockaddr *sa, uint8_t key[17])
{
	uint8_t addr[16] = {0};
	int family = source_addr(sa, addr);

	if (family < 0)
		return false;
	for (unsigned i = 0; i < t->set.n_exempt; i++)
		if (cidr_contains(&t->set.exempt[i], family, addr))
			return false;
	if (family == AF_INET)
		mask_bits(addr, 4, t->set.ipv4_bits);
	else
		mask_bits(addr, 16, t->set.ipv6_bits);
	memset(key, 0, 17);
	key[0] = (uint8_t)family;
	memcpy(key + 1, addr, 16);
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

int penalty_parse_cidr(const char *text, struct penalty_cidr *out, struct errbuf *err)
{
	char addr[64];
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned max;

	if (alen == 0 || alen >= sizeof(addr))
		return errbuf_set(err, "\"%.64s\" is not an address or ADDRESS/BITS", text);
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
		/* Clients at ::ffff:a.b.c.d are IPv4 sources: so is the block. */
		if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)out->addr)) {
			memmove(out->addr, out->addr + 12, 4);
			memset(out->addr + 4, 0, 12);
			out->family = AF_INET;
			max = 32;
		}
	} else {
		return errbuf_set(err, "\"%.64s\": \"%s\" is not a numeric IPv4 or IPv6 address",
				  text, addr);
	}
	out->bits = max;
	if (slash != NULL) {
		char *end;
		unsigned long bits = strtoul(slash + 1, &end, 10);

		if (out->family == AF_INET && max == 32 && strchr(addr, ':') != NULL) {
			/* A mapped block counts its bits in IPv6 terms. */
			if (slash[1] == '\0' || *end != '\0' || bits < 96 || bits > 128)
				return errbuf_set(
					err, "\"%.64s\": the prefix length must be 96..128", text);
			out->bits = (unsigned)bits - 96;
			return 0;
		}
		if (slash[1] == '\0' || *end != '\0' || bits > max)
			return errbuf_set(err, "\"%.64s\": the prefix length must be 0..%u", text,
					  max);
		out->bits = (unsigned)bits;
	}
	return 0;
}

void penalty_format_source(struct penalty_table *t, const struct sockaddr *sa, char *buf,
			   unsigned len)
{
	uint8_t addr[16] = {0};
	char text[INET6_ADDRSTRLEN];
	int family = source_addr(sa, addr);
	unsigned bits;

	if (family < 0) {
		snprintf(buf, len, "?");
		return;
	}
	pthread_mutex_lock(&t->lock);
	bits = family == AF_INET ? t->set.ipv4_bits : t->set.ipv6_bits;
	pthread_mutex_unlock(&t->lock);
	mask_bits(addr, family == AF_INET ? 4 : 16, bits);
	inet_ntop(family, addr, text, sizeof(text));
	snprintf(buf, len, "%s/%u", text, bits);
}
