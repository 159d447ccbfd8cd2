/* lograte: rate limits with per-source summaries (see lograte.h). A chained hash
 * table over a fixed pool of entries, as in penalty.c; an entry lives while its
 * source's interval runs or it has counts to report. */
#include "lograte.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define LOGRATE_NONE UINT32_MAX

struct lograte_entry {
	uint8_t key[17];    /* family, then the address */
	uint32_t next;      /* chain, or the free list */
	uint64_t window_ms; /* when this source's current interval began */
	unsigned written;   /* full lines in that interval */
	unsigned long counts[LOGRATE__KINDS];
	uint64_t since_ms; /* the first event counted, if any */
	struct sockaddr_storage addr;
};

struct lograte {
	pthread_mutex_t lock;
	struct lograte_settings set;
	struct lograte_entry *pool;
	uint32_t *buckets;
	uint32_t n_buckets, capacity, free_head;
	uint64_t tokens_milli; /* overall budget, in thousandths of a line */
	uint64_t refill_ms;
	uint64_t flushed_ms;           /* the last summaries */
	struct lograte_summary others; /* sources the table had no room for */
	unsigned others_seen;
};

/* Five seconds' worth of lines may come at once. */
static uint64_t lograte_burst_milli(const struct lograte *lr)
{
	return 5000ull * lr->set.per_second;
}

struct lograte *lograte_create(unsigned max_sources, const struct lograte_settings *set,
			       struct errbuf *err)
{
	struct lograte *lr = calloc(1, sizeof(*lr));
	uint32_t nb = 64;

	if (lr == NULL || max_sources == 0)
		goto oom;
	while (nb < max_sources && nb < (1u << 30))
		nb <<= 1;
	lr->pool = calloc(max_sources, sizeof(*lr->pool));
	lr->buckets = malloc(nb * sizeof(*lr->buckets));
	if (lr->pool == NULL || lr->buckets == NULL)
		goto oom;
	lr->n_buckets = nb;
	lr->capacity = max_sources;
	for (uint32_t i = 0; i < nb; i++)
		lr->buckets[i] = LOGRATE_NONE;
	for (uint32_t i = 0; i < max_sources; i++)
		lr->pool[i].next = i + 1 < max_sources ? i + 1 : LOGRATE_NONE;
	lr->free_head = 0;
	lr->set = *set;
	lr->tokens_milli = lograte_burst_milli(lr);
	pthread_mutex_init(&lr->lock, NULL);
	return lr;
oom:
	if (lr != NULL) {
		free(lr->pool);
		free(lr->buckets);
		free(lr);
	}
	errbuf_set(err, "out of memory for the log rate limiter");
	return NULL;
}

void lograte_configure(struct lograte *lr, const struct lograte_settings *set)
{
	pthread_mutex_lock(&lr->lock);
	lr->set = *set;
	pthread_mutex_unlock(&lr->lock);
}

void lograte_free(struct lograte *lr)
{
	if (lr == NULL)
		return;
	pthread_mutex_destroy(&lr->lock);
	free(lr->pool);
	free(lr->buckets);
	free(lr);
}

static uint32_t lograte_hash(const uint8_t key[17])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (int i = 0; i < 17; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

static struct lograte_entry *lograte_get(struct lograte *lr, const uint8_t key[17],
					 const struct sockaddr *sa, uint64_t now_ms)
{
	uint32_t *head = &lr->buckets[lograte_hash(key) & (lr->n_buckets - 1)], i;
	struct lograte_entry *e;
	socklen_t len;

	for (i = *head; i != LOGRATE_NONE; i = lr->pool[i].next)
		if (memcmp(lr->pool[i].key, key, 17) == 0)
			return &lr->pool[i];
	if (lr->free_head == LOGRATE_NONE)
		return NULL; /* full until the next flush frees what is idle */
	i = lr->free_head;
	e = &lr->pool[i];
	lr->free_head = e->next;
	memset(e, 0, sizeof(*e));
	memcpy(e->key, key, 17);
	e->window_ms = now_ms;
	len = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	memcpy(&e->addr, sa, len);
	e->next = *head;
	*head = i;
	return e;
}

/* The overall budget, refilled for the time passed. */
static bool lograte_take_token(struct lograte *lr, uint64_t now_ms)
{
	if (now_ms > lr->refill_ms) {
		lr->tokens_milli += (now_ms - lr->refill_ms) * lr->set.per_second;
		if (lr->tokens_milli > lograte_burst_milli(lr))
			lr->tokens_milli = lograte_burst_milli(lr);
		lr->refill_ms = now_ms;
	}
	if (lr->tokens_milli < 1000)
		return false;
	lr->tokens_milli -= 1000;
	return true;
}

static bool lograte_has_counts(const unsigned long counts[LOGRATE__KINDS])
{
	for (int k = 0; k < LOGRATE__KINDS; k++)
		if (counts[k] != 0)
			return true;
	return false;
}

static void lograte_count(unsigned long counts[LOGRATE__KINDS], uint64_t *since_ms,
			  enum lograte_kind kind, uint64_t now_ms)
{
	if (!lograte_has_counts(counts))
		*since_ms = now_ms;
	counts[kind]++;
}

bool lograte_admit(struct lograte *lr, const struct sockaddr *sa, enum lograte_kind kind,
		   uint64_t now_ms)
{
	struct lograte_entry *e = NULL;
	uint8_t key[17];
	bool full = false;

	pthread_mutex_lock(&lr->lock);
	if (lr->set.per_source == 0) {
		pthread_mutex_unlock(&lr->lock);
		return true;
	}
	/* The exact address: a summary names the host, and one host's flood
	 * must not be blamed on its neighbours. */
	if (net_addr_key(sa, key))
		e = lograte_get(lr, key, sa, now_ms);
	if (e == NULL) {
		/* No room to tell this source apart: only the overall budget. */
		full = lograte_take_token(lr, now_ms);
		if (!full)
			lograte_count(lr->others.counts, &lr->others.since_ms, kind, now_ms);
		goto out;
	}
	if (now_ms - e->window_ms >= lr->set.interval_ms) {
		e->window_ms = now_ms;
		e->written = 0;
	}
	full = e->written < lr->set.per_source && lograte_take_token(lr, now_ms);
	if (full)
		e->written++;
	else
		lograte_count(e->counts, &e->since_ms, kind, now_ms);
out:
	pthread_mutex_unlock(&lr->lock);
	return full;
}

void lograte_flush(struct lograte *lr, uint64_t now_ms, bool all, lograte_emit_fn *emit, void *arg)
{
	struct sockaddr_storage addrs[LOGRATE_MAX_SUMMARIES];
	struct lograte_summary out[LOGRATE_MAX_SUMMARIES + 1];
	unsigned n = 0;

	pthread_mutex_lock(&lr->lock);
	if (!all && now_ms - lr->flushed_ms < lr->set.interval_ms) {
		pthread_mutex_unlock(&lr->lock);
		return;
	}
	lr->flushed_ms = now_ms;
	for (uint32_t b = 0; b < lr->n_buckets; b++) {
		uint32_t *link = &lr->buckets[b], i;

		while ((i = *link) != LOGRATE_NONE) {
			struct lograte_entry *e = &lr->pool[i];

			if (lograte_has_counts(e->counts)) {
				struct lograte_summary *sum;

				if (n < LOGRATE_MAX_SUMMARIES) {
					sum = &out[n];
					memset(sum, 0, sizeof(*sum));
					addrs[n] = e->addr;
					sum->source = (const struct sockaddr *)&addrs[n];
					sum->n_sources = 1;
					sum->since_ms = e->since_ms;
					n++;
				} else {
					sum = &lr->others;
					if (sum->since_ms == 0 || e->since_ms < sum->since_ms)
						sum->since_ms = e->since_ms;
					lr->others_seen++;
				}
				for (int k = 0; k < LOGRATE__KINDS; k++)
					sum->counts[k] += e->counts[k];
				memset(e->counts, 0, sizeof(e->counts));
			}
			/* An entry whose interval is over has nothing left to
			 * track: its next event starts a fresh one. */
			if (all || now_ms - e->window_ms >= lr->set.interval_ms) {
				*link = e->next;
				e->next = lr->free_head;
				lr->free_head = i;
				continue;
			}
			link = &e->next;
		}
	}
	if (lograte_has_counts(lr->others.counts)) {
		out[n] = lr->others;
		out[n].source = NULL;
		out[n].n_sources = lr->others_seen;
		n++;
	}
	memset(&lr->others, 0, sizeof(lr->others));
	lr->others_seen = 0;
	pthread_mutex_unlock(&lr->lock);
	for (unsigned i = 0; i < n; i++)
		emit(&out[i], arg);
}
