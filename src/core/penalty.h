/* penalty: per-source state kept out of the accept loop, in the manner of
 * OpenSSH's PerSourcePenalties. Sources are netblocks (/24 and /64 by default).
 * Failed logins, exceeded grace times and connections that end without a login
 * attempt (OpenSSH's "noauth") add time to a source's penalty; once
 * it reaches a minimum the source is refused, before any password check, until
 * the penalty expires; repeat offences lengthen it up to a cap. The table also
 * counts each source's connections still logging in, for a per-source cap.
 * Bounded in size, thread-safe (one mutex), no allocation after creation. */
#ifndef SOCKGATE_PENALTY_H
#define SOCKGATE_PENALTY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "errbuf.h"
#include "net.h"

struct penalty_settings {
	bool enabled;
	unsigned authfail_ms;          /* added per failed login */
	unsigned grace_ms;             /* added when the login grace time runs out */
	unsigned noauth_ms;            /* added when a connection ends without an attempt */
	unsigned min_ms;               /* refused once the penalty reaches this */
	unsigned max_ms;               /* the penalty never exceeds this */
	unsigned ipv4_bits;            /* netblock of an IPv4 source */
	unsigned ipv6_bits;            /* netblock of an IPv6 source */
	unsigned per_source_startups;  /* logging-in connections per source; 0 = no cap */
	const struct net_cidr *exempt; /* never penalised nor capped */
	unsigned n_exempt;
};

enum penalty_event {
	PENALTY_AUTHFAIL, /* a wrong password (or user) */
	PENALTY_GRACE,    /* the login grace time ran out */
	PENALTY_NOAUTH,   /* the client left, or was sent away, before any attempt */
};

enum penalty_verdict {
	PENALTY_ALLOW = 0,
	PENALTY_REFUSE_PENALISED, /* the source is serving a penalty */
	PENALTY_REFUSE_STARTUPS,  /* the source has too many logins under way */
};

struct penalty_table;

/* A table for at most max_sources sources at once. */
struct penalty_table *penalty_create(unsigned max_sources, struct errbuf *err);
void penalty_free(struct penalty_table *t);

/* Replaces the settings (a copy is kept; exempt entries are copied too). A
 * change of what makes a source (netblock sizes, exemptions) starts a fresh
 * table: old entries would no longer match their sources. */
int penalty_configure(struct penalty_table *t, const struct penalty_settings *s,
		      struct errbuf *err);

/* At accept: may this source open a connection now? If allowed, the source's
 * count of logins under way may be raised: then *ticket is non-zero and must
 * be handed to penalty_login_done() once the connection logged in or went.
 * When refused, *remaining_ms says how long the penalty still runs. */
enum penalty_verdict penalty_admit(struct penalty_table *t, const struct sockaddr *sa,
				   uint64_t now_ms, uint64_t *remaining_ms, uint32_t *ticket);

/* The connection admitted with ticket has logged in or gone. */
void penalty_login_done(struct penalty_table *t, const struct sockaddr *sa, uint32_t ticket);

/* Records a failure. Returns true if this failure made the source penalised
 * (it was not refused before); *until_ms is when the penalty ends. */
bool penalty_record(struct penalty_table *t, const struct sockaddr *sa, enum penalty_event ev,
		    uint64_t now_ms, uint64_t *until_ms);

/* Sources serving a penalty now. */
unsigned penalty_active(struct penalty_table *t, uint64_t now_ms);

/* The netblock of sa as text ("192.0.2.0/24"), for logs. */
void penalty_format_source(struct penalty_table *t, const struct sockaddr *sa, char *buf,
			   unsigned len);

/* Calls fn for every source with a penalty running at now_ms: its netblock
 * ("192.0.2.7/32"), whether it is refused now, the time left, and its logins
 * under way. Under the table's lock: fn must not call back into the table. */
typedef void penalty_list_fn(const char *source, bool refused, uint64_t left_ms, unsigned startups,
			     void *arg);
void penalty_list(struct penalty_table *t, uint64_t now_ms, penalty_list_fn *fn, void *arg);

/* Ends the penalty of sa's source (sockgatectl penalties lift). True if there
 * was one. */
bool penalty_lift(struct penalty_table *t, const struct sockaddr *sa, uint64_t now_ms);

#endif
