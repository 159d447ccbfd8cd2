/* admission: the checks at accept (see admission.h). */
#include "admission.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

struct admission {
	struct penalty_table *penalties;
	struct lograte *lograte;
	uint64_t drop_seed; /* random early drop */
};

struct admission *admission_create(struct penalty_table *pt, struct lograte *lr, struct errbuf *err)
{
	struct admission *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	a->penalties = pt;
	a->lograte = lr;
	if (getrandom(&a->drop_seed, sizeof(a->drop_seed), GRND_NONBLOCK) != sizeof(a->drop_seed))
		a->drop_seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	a->drop_seed |= 1;
	return a;
}

void admission_free(struct admission *a)
{
	free(a);
}

/* Refuses a connection before the login. A flood of them must not become a
 * flood of log lines: past a modest rate they are counted per source and
 * summarised (lograte). */
static void admission_refuse(struct admission *a, int fd, const struct sockaddr *peer,
			     struct gateway *gw, uint64_t now_ms, enum stats_refusal why,
			     const char *message, const char *reason)
{
	stats_refused(gw->stats, why);
	if (a->lograte == NULL || lograte_admit(a->lograte, peer, LOGRATE_REFUSED, now_ms)) {
		char addr[NET_ADDRSTRLEN], port[8];

		net_format_host(peer, addr, sizeof(addr));
		snprintf(port, sizeof(port), "%u", net_sockaddr_port(peer));
		log_event(LOG_WARNING, LOG_EV_LIMIT_REACHED, "connection refused",
			  LOG_FIELDS({"SOCKGATE_GATEWAY", gw->cfg->name}, {"REMOTE_ADDR", addr},
				     {"REMOTE_PORT", port}, {"REASON", reason}));
	}
	/* Best effort, never blocking: the socket is non-blocking and fresh. */
	if (message[0] != '\0')
		(void)!send(fd, message, strlen(message), MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

/* OpenSSH's MaxStartups: from begin logging-in connections on, refuse a
 * growing share of new ones (rate % at begin, all at full), so a flood of
 * connections that never log in cannot take every slot for certain. */
static bool admission_early_drop(struct admission *a, const struct config_limits *lim, unsigned n)
{
	unsigned p;

	if (n < lim->startups_begin)
		return false;
	if (n >= lim->startups_full)
		return true;
	p = lim->startups_rate + (100 - lim->startups_rate) * (n - lim->startups_begin) /
					 (lim->startups_full - lim->startups_begin);
	/* xorshift: cheap, and good enough to pick whom to drop. */
	a->drop_seed ^= a->drop_seed << 13;
	a->drop_seed ^= a->drop_seed >> 7;
	a->drop_seed ^= a->drop_seed << 17;
	return a->drop_seed % 100 < p;
}

bool admission_listed(const struct config_gateway *cfg, const struct sockaddr *peer)
{
	if (net_cidrs_contain(cfg->deny, cfg->n_deny, peer))
		return false;
	return cfg->n_allow == 0 || net_cidrs_contain(cfg->allow, cfg->n_allow, peer);
}

bool admission_check_source(struct admission *a, const struct config_gateway *cfg,
			    const struct sockaddr *peer, uint64_t now_ms, uint32_t *ticket,
			    struct admission_refusal *r)
{
	uint64_t remaining = 0;

	*ticket = 0;
	/* Before the penalty table: a listed-out address costs it nothing. */
	if (!admission_listed(cfg, peer)) {
		r->message = "Access denied.\n";
		r->why = STATS_REFUSED_DENIED;
		snprintf(r->reason, sizeof(r->reason), "address not allowed (allow/deny)");
		return false;
	}
	switch (a->penalties == NULL
			? PENALTY_ALLOW
			: penalty_admit(a->penalties, peer, now_ms, &remaining, ticket)) {
	case PENALTY_ALLOW:
		return true;
	case PENALTY_REFUSE_PENALISED:
		r->message = "Too many failed logins from your address; try again later.\n";
		r->why = STATS_REFUSED_PENALISED;
		snprintf(r->reason, sizeof(r->reason), "source penalised for %llu ms more",
			 (unsigned long long)remaining);
		return false;
	case PENALTY_REFUSE_STARTUPS:
		break;
	}
	r->message = "Too many connections.\n";
	r->why = STATS_REFUSED_PER_SOURCE;
	snprintf(r->reason, sizeof(r->reason), "too many connections logging in from this source");
	return false;
}

bool admission_admit(struct admission *a, const struct config_limits *lim, struct gateway *gw,
		     unsigned logging_in, int fd, const struct sockaddr *peer, uint64_t now_ms,
		     uint32_t *ticket)
{
	const struct config_gateway *cfg = gw->cfg;
	struct admission_refusal r;

	*ticket = 0;
	if (cfg->proxy_protocol.enabled) {
		/* Only the balancers may connect, and they must speak first. */
		if (!net_cidrs_contain(cfg->proxy_protocol.from, cfg->proxy_protocol.n_from,
				       peer)) {
			admission_refuse(a, fd, peer, gw, now_ms, STATS_REFUSED_NOT_BALANCER, "",
					 "not a proxy_protocol.from source");
			return false;
		}
	} else if (!admission_listed(cfg, peer)) {
		admission_refuse(a, fd, peer, gw, now_ms, STATS_REFUSED_DENIED, "Access denied.\n",
				 "address not allowed (allow/deny)");
		return false;
	}
	if (admission_early_drop(a, lim, logging_in)) {
		admission_refuse(a, fd, peer, gw, now_ms, STATS_REFUSED_STARTUPS,
				 "Too many connections.\n",
				 "too many connections logging in (limits.startups)");
		return false;
	}
	/* Behind a balancer, the client's own address comes with the header. */
	if (!cfg->proxy_protocol.enabled &&
	    !admission_check_source(a, cfg, peer, now_ms, ticket, &r)) {
		admission_refuse(a, fd, peer, gw, now_ms, r.why, r.message, r.reason);
		return false;
	}
	if (!gateway_session_begin(gw)) {
		if (*ticket != 0)
			penalty_login_done(a->penalties, peer, *ticket);
		admission_refuse(a, fd, peer, gw, now_ms, STATS_REFUSED_MAX_SESSIONS,
				 "Too many connections.\n", "max_sessions reached");
		return false;
	}
	return true;
}

void admission_cancel(struct admission *a, struct gateway *gw, int fd, const struct sockaddr *peer,
		      uint32_t ticket, uint64_t now_ms)
{
	if (ticket != 0)
		penalty_login_done(a->penalties, peer, ticket);
	gateway_session_end(gw);
	admission_refuse(a, fd, peer, gw, now_ms, STATS_REFUSED_OTHER, "Service unavailable.\n",
			 "out of memory");
}
