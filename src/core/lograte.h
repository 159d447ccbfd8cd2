/* lograte: keeps the log readable, and under journald's rate limit, when
 * connections flood in. The events of connections that never logged in (a
 * session closed before its login, a connection refused, an upstream that a
 * plain relay could not reach) are written in full up to a modest rate, per
 * source and overall; beyond it they are counted per source, and each source's
 * counts are written as one summary line per interval. Security events (login
 * ok and failed, penalties, revocations, reloads) never pass through here: they
 * are always written. Thread-safe (one mutex); allocates only at creation. */
#ifndef SOCKGATE_LOGRATE_H
#define SOCKGATE_LOGRATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "errbuf.h"

/* Summary lines per interval; the sources beyond them share one more line. */
#define LOGRATE_MAX_SUMMARIES 20

struct lograte_settings {
	unsigned per_source;  /* full lines per source and interval; 0: no limit at all */
	unsigned per_second;  /* full lines overall per second (bursts of five seconds' worth) */
	unsigned interval_ms; /* per source, and between summaries */
};

enum lograte_kind {
	LOGRATE_CLOSED = 0,  /* a session ended before its login */
	LOGRATE_REFUSED,     /* a connection refused at accept */
	LOGRATE_UNREACHABLE, /* a session without a user found no upstream */
	LOGRATE__KINDS
};

/* What was counted instead of written, for one source (or for "other
 * sources": then source is NULL and n_sources says how many). */
struct lograte_summary {
	const struct sockaddr *source;
	unsigned n_sources;
	unsigned long counts[LOGRATE__KINDS];
	uint64_t since_ms; /* the first event counted */
};

typedef void lograte_emit_fn(const struct lograte_summary *sum, void *arg);

struct lograte;

/* A limiter that tracks up to max_sources sources at once (more share the
 * "other sources" line). */
struct lograte *lograte_create(unsigned max_sources, const struct lograte_settings *set,
			       struct errbuf *err);
/* New settings (a reload); counts so far are kept. */
void lograte_configure(struct lograte *lr, const struct lograte_settings *set);
void lograte_free(struct lograte *lr);

/* An event of kind from source sa at now_ms (loop_now_ms()): true if its line
 * may be written in full; false if it was counted for a summary instead. */
bool lograte_admit(struct lograte *lr, const struct sockaddr *sa, enum lograte_kind kind,
		   uint64_t now_ms);

/* Hands emit the summary of every source whose interval is over (all of
 * them if all, at exit) and forgets those counts. emit runs without the lock
 * held, so it may log. */
void lograte_flush(struct lograte *lr, uint64_t now_ms, bool all, lograte_emit_fn *emit, void *arg);

#endif
