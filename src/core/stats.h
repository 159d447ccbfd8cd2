/* stats: the counters and gauges behind the Prometheus endpoint, and their text
 * exposition. Counters live per gateway name for the daemon's life (a counter never
 * goes down, not even when a reload removes its gateway) and are bumped with relaxed
 * atomics, without lock or lookup; gauges are a snapshot the main loop hands over. */
#ifndef SOCKGATE_STATS_H
#define SOCKGATE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errbuf.h"

/* Why admission turned a connection away (sockgate_connections_refused_total{reason}). */
enum stats_refusal {
	STATS_REFUSED_STARTUPS,         /* limits.startups: too many logging in (early drop) */
	STATS_REFUSED_PENALISED,        /* the source serves a penalty */
	STATS_REFUSED_PER_SOURCE,       /* too many logins under way from the source */
	STATS_REFUSED_MAX_SESSIONS,     /* the gateway's max_sessions */
	STATS_REFUSED_DENIED,           /* allow/deny lists */
	STATS_REFUSED_NOT_BALANCER,     /* proxy_protocol gateway, peer not in its from list */
	STATS_REFUSED_BAD_PROXY_HEADER, /* the balancer's PROXY header was malformed */
	STATS_REFUSED_OTHER,            /* anything else (out of memory) */
	STATS_REFUSED_N
};

/* Why a login failed (sockgate_logins_total{result="failed",reason}); see
 * stats_login_reason() for the daemon's texts each one stands for. */
enum stats_login_reason {
	STATS_LOGIN_BAD_CREDENTIALS,
	STATS_LOGIN_WRONG_CODE,
	STATS_LOGIN_CODE_REUSED,
	STATS_LOGIN_NO_SECOND_FACTOR,
	STATS_LOGIN_LOCKED,
	STATS_LOGIN_EXPIRED,
	STATS_LOGIN_NOT_PERMITTED,
	STATS_LOGIN_WRONG_NETWORK,
	STATS_LOGIN_ACCOUNT_REFUSED, /* PAM's account management said no */
	STATS_LOGIN_PASSWORD_CHANGE, /* PAM wants a new password first */
	STATS_LOGIN_PAM_ERROR,       /* PAM failed or its service is unavailable */
	STATS_LOGIN_OTHER,
	STATS_LOGIN_N
};

/* Histogram buckets: the finite upper bounds ("le"), then +Inf. */
#define STATS_SESSION_BUCKETS 8  /* 1, 10, 60, 300, 1800, 3600, 14400, 86400 seconds */
#define STATS_CHECK_BUCKETS   11 /* 0.001, 0.0025, ..., 1, 2.5 seconds */

/* The counters of one gateway name. Every field is a counter: bump it with
 * stats_add()/stats_inc() (or the helpers below) from any thread, read it with
 * stats_read(); never assign to it. The histogram keeps per-bucket counts (the
 * last one is +Inf); its _count is their total, so the two always agree. */
struct stats_gateway {
	const char *name; /* read-only */
	uint64_t accepted;
	uint64_t refused[STATS_REFUSED_N];
	uint64_t logins_ok;
	uint64_t logins_failed[STATS_LOGIN_N];
	uint64_t bytes_in;  /* client -> upstream */
	uint64_t bytes_out; /* upstream -> client */
	uint64_t upstream_connect_failures;
	uint64_t tls_ok;     /* the client side's TLS handshakes */
	uint64_t tls_failed; /* (upstream TLS failing counts as a connect failure) */
	uint64_t session_buckets[STATS_SESSION_BUCKETS + 1];
	uint64_t session_ms_sum;
	struct stats_gateway *next; /* private: the registry's list */
};

/* The counters of a gateway that no registry knows (sockgate -t, unit tests):
 * bumped like any other, shown nowhere. */
extern struct stats_gateway stats_gateway_unused;

/* Relaxed: a counter orders nothing, and a scrape may see one a moment late. One
 * add per relayed chunk costs far less than the read() and write() that moved it. */
static inline void stats_add(uint64_t *counter, uint64_t n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static inline void stats_inc(uint64_t *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

static inline uint64_t stats_read(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* A value out of range counts as STATS_REFUSED_OTHER. */
static inline void stats_refused(struct stats_gateway *g, enum stats_refusal why)
{
	stats_inc(&g->refused[(unsigned)why < STATS_REFUSED_N ? why : STATS_REFUSED_OTHER]);
}

/* A value out of range counts as STATS_LOGIN_OTHER. */
static inline void stats_login_failed(struct stats_gateway *g, enum stats_login_reason why)
{
	stats_inc(&g->logins_failed[(unsigned)why < STATS_LOGIN_N ? why : STATS_LOGIN_OTHER]);
}

/* The gauges, as the daemon's main loop sees them (about once a second). The
 * renderer never reads daemon state: it shows the last snapshot handed over. */
struct stats_gauge_gateway {
	const char *name;
	unsigned logging_in; /* accepted, not yet relaying */
	unsigned relaying;
};

struct stats_gauge_upstream {
	const char *gateway;
	const char *target;  /* the target's name, "" for the gateway's own upstream list */
	const char *address; /* as configured, e.g. "10.0.0.5:22" */
	bool up;
};

struct stats_gauges {
	const struct stats_gauge_gateway *gateways; /* one per name; later duplicates ignored */
	size_t n_gateways;
	const struct stats_gauge_upstream *upstreams; /* duplicates (same three texts) ignored */
	size_t n_upstreams;
	unsigned check_queue;       /* password checks waiting for a thread */
	unsigned penalised_sources; /* sources refused by a penalty right now */
};

struct stats;

/* An empty registry. Returns NULL with err filled in when out of memory. */
struct stats *stats_create(struct errbuf *err);
/* Frees st and every stats_gateway it handed out. No other thread may use st, or
 * a pointer from it, any more (stop the metrics listener first). NULL is fine. */
void stats_free(struct stats *st);

/* The counters of gateway name: found, or created with every counter 0. Takes
 * the registry's mutex: call it when a gateway is made (start-up, reload), keep
 * the pointer, and bump its fields on the hot path. The pointer stays valid until
 * stats_free(), whatever reloads do; a gateway made again under the same name gets
 * the same pointer. Returns NULL when out of memory. */
struct stats_gateway *stats_gateway_get(struct stats *st, const char *name);

/* The reason enum for a denial text of the daemon's ("bad credentials", "wrong
 * verification code", "account refused by PAM", ...), which may go on after a
 * space or colon ("bad credentials (client gone)"); STATS_LOGIN_OTHER for a text
 * it does not know, or NULL. */
enum stats_login_reason stats_login_reason(const char *text);

/* Records a relayed session's length, from its login to its close, when it closes
 * (the HELP text says so). A session that never logged in is not one. */
void stats_observe_session(struct stats_gateway *g, uint64_t duration_ms);

/* Records a password check's time, from its submission to its verdict, queue wait
 * included (the HELP text says so). */
void stats_observe_check(struct stats *st, uint64_t us);

/* Replaces the gauge snapshot with a copy of g (strings included: g may go away
 * at return). Returns 0, or -1 when out of memory, the previous snapshot kept. */
int stats_set_gauges(struct stats *st, const struct stats_gauges *g);

/* Everything in the Prometheus text exposition format, version 0.0.4, with the
 * process's figures (descriptors, threads, memory, CPU) read now from /proc.
 * *text is NUL-terminated, *len bytes without the NUL; the caller frees it with
 * free(). Thread-safe. Returns 0, or -1 when out of memory (*text NULL). */
int stats_render(struct stats *st, char **text, size_t *len);

#endif
