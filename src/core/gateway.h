/* gateway: the live form of one configured gateway: its settings, its loaded
 * credentials and its session counters. Sessions hold a reference, so a reload
 * that builds new gateways leaves live sessions on the settings they started
 * with. Counters are shared by the gateways of the same name across reloads, so
 * max_sessions counts every live session of that name. */
#ifndef SOCKGATE_GATEWAY_H
#define SOCKGATE_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "credentials.h"
#include "errbuf.h"
#include "pool.h"
#include "stats.h"
#include "tls.h"
#include "user_sessions.h"

/* What the gateways of one name share across reloads. */
struct gateway_counters {
	int refs;
	unsigned sessions;   /* open sessions, any state */
	unsigned logging_in; /* not yet relaying */
	/* The credentials in force for this name: set by gateway_publish(),
	 * emptied by gateway_retire(); password checks read it. */
	struct credentials_slot *creds_now;
	struct user_sessions *per_user; /* logged-in sessions by user */
};

struct gateway {
	int refs;
	struct config *config; /* a reference: cfg points into it */
	const struct config_gateway *cfg;
	struct credentials *creds;        /* NULL if the gateway does not authenticate */
	struct tls_context *tls;          /* the listeners' TLS, or NULL */
	struct tls_context *upstream_tls; /* TLS to the upstream, or NULL */
	struct pool *pool;                /* the upstream list's state */
	struct pool **target_pools;       /* one per cfg->targets[] */
	bool grants_passes;               /* a pass gateway names this one */
	uint8_t *proxy_key;               /* upstream_proxy_protocol_key, or NULL */
	size_t proxy_key_len;
	struct gateway_counters *counters;
	struct stats_gateway *stats; /* the metrics of its name; stats_gateway_unused until set */
};

/* Builds the gateway for cfg (a gateway of config), loading its credentials
 * file and its TLS certificates and keys (owner checks against owner_uid). prev,
 * if not NULL, is the gateway of the same name being replaced: its counters and
 * TLS ticket keys carry over, and its credentials stay in force until
 * gateway_publish(). */
struct gateway *gateway_create(struct config *config, const struct config_gateway *cfg,
			       uid_t owner_uid, const struct gateway *prev, struct errbuf *err);

struct gateway *gateway_ref(struct gateway *gw);
void gateway_unref(struct gateway *gw);

/* Puts gw's credentials in force for every login of its name, including those
 * accepted before (a reload that committed). */
void gateway_publish(struct gateway *gw);
/* gw's name is gone from the configuration: its logins under way have no
 * credentials any more. */
void gateway_retire(struct gateway *gw);

/* Counts a logged-in session of user; false if max_sessions_per_user of
 * theirs are open. */
bool gateway_user_begin(struct gateway *gw, const char *user);
void gateway_user_end(struct gateway *gw, const char *user);

/* Reserves a session slot; false if max_sessions are open. */
bool gateway_session_begin(struct gateway *gw);
void gateway_session_end(struct gateway *gw);

#endif
