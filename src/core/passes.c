/* passes: addresses that logged in recently (see passes.h). */
#include "passes.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define PASSES_BUCKETS 1024

struct pass {
	struct pass *next;
	uint8_t key[NET_ADDR_KEY_LEN];
	uint64_t granted_ms;
	char gateway[PASSES_MAX_NAME + 1];
	char user[PASSES_MAX_NAME + 1];
	char target[PASSES_MAX_NAME + 1];
};

struct passes {
	pthread_mutex_t lock;
	size_t count, max;
	struct pass *buckets[PASSES_BUCKETS];
};

struct passes *passes_create(size_t max)
{
	struct passes *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	p->max = max;
	return p;
}

void passes_free(struct passes *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < PASSES_BUCKETS; i++) {
		while (p->buckets[i] != NULL) {
			struct pass *e = p->buckets[i];

			p->buckets[i] = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static size_t passes_bucket(const uint8_t *key, const char *gateway)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < NET_ADDR_KEY_LEN; i++)
		h = (h ^ key[i]) * 16777619u;
	for (const char *c = gateway; *c != '\0'; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	return h % PASSES_BUCKETS;
}

static struct pass **passes_slot(struct passes *p, const uint8_t *key, const char *gateway)
{
	struct pass **e = &p->buckets[passes_bucket(key, gateway)];

	while (*e != NULL && (memcmp((*e)->key, key, NET_ADDR_KEY_LEN) != 0 ||
			      strcmp((*e)->gateway, gateway) != 0))
		e = &(*e)->next;
	return e;
}

/* Frees the oldest pass (lock held): the table is full. */
static void passes_drop_oldest(struct passes *p)
{
	struct pass **oldest = NULL;

	for (size_t i = 0; i < PASSES_BUCKETS; i++)
		for (struct pass **e = &p->buckets[i]; *e != NULL; e = &(*e)->next)
			if (oldest == NULL || (*e)->granted_ms < (*oldest)->granted_ms)
				oldest = e;
	if (oldest != NULL) {
		struct pass *gone = *oldest;

		*oldest = gone->next;
		free(gone);
		p->count--;
	}
}

void passes_grant(struct passes *p, const char *gateway, const struct sockaddr *addr,
		  const char *user, const char *target, uint64_t now_ms)
{
	uint8_t key[NET_ADDR_KEY_LEN];
	struct pass **e;

	if (!net_addr_key(addr, key))
		return;
	pthread_mutex_lock(&p->lock);
	e = passes_slot(p, key, gateway);
	if (*e == NULL) {
		if (p->count >= p->max)
			passes_drop_oldest(p);
		e = passes_slot(p, key, gateway);
		*e = calloc(1, sizeof(**e));
		if (*e == NULL) {
			pthread_mutex_unlock(&p->lock);
			return;
		}
		memcpy((*e)->key, key, sizeof(key));
		snprintf((*e)->gateway, sizeof((*e)->gateway), "%s", gateway);
		p->count++;
	}
	(*e)->granted_ms = now_ms;
	snprintf((*e)->user, sizeof((*e)->user), "%s", user);
	snprintf((*e)->target, sizeof((*e)->target), "%s", target != NULL ? target : "");
	pthread_mutex_unlock(&p->lock);
}

bool passes_find(struct passes *p, const char *gateway, const struct sockaddr *addr,
		 uint64_t max_age_ms, uint64_t now_ms, char user[PASSES_MAX_NAME + 1],
		 char target[PASSES_MAX_NAME + 1])
{
	uint8_t key[NET_ADDR_KEY_LEN];
	struct pass *e;
	bool found = false;

	if (!net_addr_key(addr, key))
		return false;
	pthread_mutex_lock(&p->lock);
	e = *passes_slot(p, key, gateway);
	if (e != NULL && now_ms - e->granted_ms <= max_age_ms) {
		memcpy(user, e->user, sizeof(e->user));
		memcpy(target, e->target, sizeof(e->target));
		found = true;
	}
	pthread_mutex_unlock(&p->lock);
	return found;
}

size_t passes_filter(struct passes *p, passes_keep_fn *keep, void *arg)
{
	size_t ended = 0;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < PASSES_BUCKETS; i++) {
		for (struct pass **e = &p->buckets[i]; *e != NULL;) {
			struct pass *x = *e;

			if (keep(x->gateway, x->user, arg)) {
				e = &x->next;
				continue;
			}
			*e = x->next;
			free(x);
			p->count--;
			ended++;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return ended;
}

void passes_expire(struct passes *p, uint64_t max_age_ms, uint64_t now_ms)
{
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < PASSES_BUCKETS; i++) {
		for (struct pass **e = &p->buckets[i]; *e != NULL;) {
			struct pass *x = *e;

			if (now_ms - x->granted_ms <= max_age_ms) {
				e = &x->next;
				continue;
			}
			*e = x->next;
			free(x);
			p->count--;
		}
	}
	pthread_mutex_unlock(&p->lock);
}

size_t passes_count(struct passes *p)
{
	size_t n;

	pthread_mutex_lock(&p->lock);
	n = p->count;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void passes_list(struct passes *p, uint64_t now_ms, passes_list_fn *fn, void *arg)
{
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < PASSES_BUCKETS; i++) {
		for (struct pass *e = p->buckets[i]; e != NULL; e = e->next) {
			char addr[INET6_ADDRSTRLEN] = "?";

			inet_ntop(e->key[0], e->key + 1, addr, sizeof(addr));
			fn(e->gateway, addr, e->user, e->target, now_ms - e->granted_ms, arg);
		}
	}
	pthread_mutex_unlock(&p->lock);
}

size_t passes_revoke(struct passes *p, const struct net_cidr *range, const char *user)
{
	size_t ended = 0;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < PASSES_BUCKETS; i++) {
		for (struct pass **e = &p->buckets[i]; *e != NULL;) {
			struct pass *x = *e;

			if ((range != NULL && !net_cidr_contains(range, x->key)) ||
			    (user != NULL && strcmp(user, x->user) != 0)) {
				e = &x->next;
				continue;
			}
			*e = x->next;
			free(x);
			p->count--;
			ended++;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return ended;
}
