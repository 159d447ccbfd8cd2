/* gateway: live gateways and their counters (see gateway.h). */
#include "gateway.h"
#include "proxy.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The TLS contexts of cfg; errors say which gateway. */
static int gateway_load_tls(struct gateway *gw, const struct config_gateway *cfg, uid_t owner_uid,
			    const struct gateway *prev, struct errbuf *err)
{
	const struct config_tls *t = &cfg->tls;
	const struct config_upstream_tls *u = &cfg->upstream_tls;
	struct errbuf why;

	if (t->enabled) {
		struct tls_server_settings set = {
			.certificate = t->certificate_path,
			.key = t->key_path,
			.key_owner = owner_uid,
			.tls13_only = t->min_version == CONFIG_TLS_1_3,
			.ciphers = t->ciphers,
			.ciphersuites = t->ciphersuites,
			.client_ca = t->client_ca_path,
			.verify_client = (enum tls_verify)t->verify_client,
			.tickets = t->session_tickets,
			.ticket_rotation_ms = t->ticket_rotation_ms,
			.ktls = t->ktls,
		};

		gw->tls = tls_server_context(&set, &why);
		if (gw->tls == NULL)
			return errbuf_set(err, "gateway \"%s\": tls: %s", cfg->name, why.msg);
		if (prev != NULL && prev->tls != NULL)
			tls_context_keep_tickets(gw->tls, prev->tls);
	}
	if (u->enabled) {
		struct tls_client_settings set = {
			.ca = u->ca_path,
			.verify = u->verify,
			.certificate = u->certificate_path,
			.key = u->key_path,
			.key_owner = owner_uid,
			.tls13_only = u->min_version == CONFIG_TLS_1_3,
			.ktls = u->ktls,
		};

		gw->upstream_tls = tls_client_context(&set, &why);
		if (gw->upstream_tls == NULL) {
			tls_context_unref(gw->tls);
			gw->tls = NULL;
			return errbuf_set(err, "gateway \"%s\": upstream_tls: %s", cfg->name,
					  why.msg);
		}
	}
	return 0;
}

_Static_assert((int)POOL_FIRST == (int)CONFIG_BALANCE_FIRST &&
		       (int)POOL_ROUNDROBIN == (int)CONFIG_BALANCE_ROUNDROBIN &&
		       (int)POOL_LEASTCONN == (int)CONFIG_BALANCE_LEASTCONN &&
		       (int)POOL_SOURCE == (int)CONFIG_BALANCE_SOURCE,
	       "the balance modes of config and pool");

/* A pool of addrs, the gateway's or a target's. */
static struct pool *gateway_pool(const struct config_gateway *cfg, const char *target,
				 const struct config_addr *addrs, size_t n, const struct pool *prev)
{
	struct pool_addr *pa = calloc(n, sizeof(*pa));
	struct pool *p;

	if (pa == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		pa[i].ss = addrs[i].ss;
		pa[i].len = addrs[i].len;
		memcpy(pa[i].text, addrs[i].text, sizeof(pa[i].text));
		memcpy(pa[i].resolved, addrs[i].resolved, sizeof(pa[i].resolved));
	}
	p = pool_create(cfg->name, target, pa, n, (enum pool_balance)cfg->balance,
			cfg->health.enabled, prev);
	free(pa);
	return p;
}

/* The pools of the upstream list and of each target; the members of prev's
 * pools of the same name keep their state. */
static int gateway_make_pools(struct gateway *gw, const struct config_gateway *cfg,
			      const struct gateway *prev)
{
	gw->pool = gateway_pool(cfg, NULL, cfg->upstream, cfg->n_upstream,
				prev != NULL ? prev->pool : NULL);
	if (gw->pool == NULL)
		return -1;
	if (cfg->n_targets == 0)
		return 0;
	gw->target_pools = calloc(cfg->n_targets, sizeof(*gw->target_pools));
	if (gw->target_pools == NULL)
		return -1;
	for (size_t i = 0; i < cfg->n_targets; i++) {
		const struct config_target *t = &cfg->targets[i];
		const struct pool *old = NULL;

		for (size_t j = 0; prev != NULL && j < prev->cfg->n_targets; j++)
			if (strcmp(prev->cfg->targets[j].name, t->name) == 0)
				old = prev->target_pools[j];
		gw->target_pools[i] = gateway_pool(cfg, t->name, t->upstream, t->n_upstream, old);
		if (gw->target_pools[i] == NULL)
			return -1;
	}
	return 0;
}

static void gateway_free_pools(struct gateway *gw, const struct config_gateway *cfg)
{
	pool_unref(gw->pool);
	gw->pool = NULL;
	for (size_t i = 0; gw->target_pools != NULL && i < cfg->n_targets; i++)
		pool_unref(gw->target_pools[i]);
	free(gw->target_pools);
	gw->target_pools = NULL;
}

/* The secret that signs the identity sent in PROXY v2 headers. */
static int gateway_load_proxy_key(struct gateway *gw, const struct config_gateway *cfg,
				  uid_t owner_uid, struct errbuf *err)
{
	struct errbuf why;

	gw->proxy_key = malloc(PROXY_KEY_MAX);
	if (gw->proxy_key == NULL)
		return errbuf_set(err, "out of memory");
	if (proxy_key_load(cfg->upstream_proxy_protocol_key_path, owner_uid, gw->proxy_key,
			   PROXY_KEY_MAX, &gw->proxy_key_len, &why) < 0) {
		free(gw->proxy_key);
		gw->proxy_key = NULL;
		return errbuf_set(err, "gateway \"%s\": upstream_proxy_protocol_key: %s", cfg->name,
				  why.msg);
	}
	return 0;
}

static void gateway_free_key(struct gateway *gw)
{
	if (gw->proxy_key != NULL) {
		explicit_bzero(gw->proxy_key, PROXY_KEY_MAX);
		free(gw->proxy_key);
	}
	gw->proxy_key = NULL;
}

/* A PAM service that does not exist falls back to PAM's "other" service: a
 * typo would be a runtime surprise, so it is a load error. */
static int gateway_check_pam(const struct config_gateway *cfg, struct errbuf *err)
{
	static const char *const own[] = {"/etc/pam.d", "/usr/lib/pam.d", "/lib/pam.d"};
	const char *dir = cfg->pam_config_dir_path;
	char path[PATH_MAX + 80];
	struct stat st;

	for (size_t i = 0; i < (dir != NULL ? 1 : sizeof(own) / sizeof(own[0])); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : own[i], cfg->pam_service);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			return 0;
	}
	return errbuf_set(err, "gateway \"%s\": no PAM service \"%s\" in %s", cfg->name,
			  cfg->pam_service, dir != NULL ? dir : "/etc/pam.d or /usr/lib/pam.d");
}

struct gateway *gateway_create(struct config *config, const struct config_gateway *cfg,
			       uid_t owner_uid, const struct gateway *prev, struct errbuf *err)
{
	struct gateway *gw;

	if (cfg->authenticate && cfg->auth == CONFIG_AUTH_PAM && gateway_check_pam(cfg, err) < 0)
		return NULL;
	gw = calloc(1, sizeof(*gw));
	if (gw == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	gw->stats = prev != NULL ? prev->stats : &stats_gateway_unused;
	if (cfg->authenticate && cfg->auth == CONFIG_AUTH_FILE) {
		gw->creds = credentials_load(cfg->credentials_path, owner_uid, err);
		if (gw->creds == NULL) {
			free(gw);
			return NULL;
		}
	}
	if (gateway_load_tls(gw, cfg, owner_uid, prev, err) < 0) {
		credentials_unref(gw->creds);
		free(gw);
		return NULL;
	}
	if (cfg->upstream_proxy_protocol_key_path != NULL &&
	    gateway_load_proxy_key(gw, cfg, owner_uid, err) < 0) {
		tls_context_unref(gw->tls);
		tls_context_unref(gw->upstream_tls);
		credentials_unref(gw->creds);
		free(gw);
		return NULL;
	}
	if (gateway_make_pools(gw, cfg, prev) < 0) {
		gateway_free_key(gw);
		gateway_free_pools(gw, cfg);
		tls_context_unref(gw->tls);
		tls_context_unref(gw->upstream_tls);
		credentials_unref(gw->creds);
		free(gw);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	if (prev != NULL) {
		gw->counters = prev->counters;
		__atomic_add_fetch(&gw->counters->refs, 1, __ATOMIC_RELAXED);
	} else {
		gw->counters = calloc(1, sizeof(*gw->counters));
		if (gw->counters != NULL) {
			gw->counters->creds_now = credentials_slot_create(gw->creds);
			gw->counters->per_user = user_sessions_create();
		}
		if (gw->counters == NULL || gw->counters->creds_now == NULL ||
		    gw->counters->per_user == NULL) {
			if (gw->counters != NULL) {
				credentials_slot_free(gw->counters->creds_now);
				user_sessions_free(gw->counters->per_user);
			}
			free(gw->counters);
			gateway_free_pools(gw, cfg);
			tls_context_unref(gw->tls);
			tls_context_unref(gw->upstream_tls);
			credentials_unref(gw->creds);
			free(gw);
			errbuf_set(err, "out of memory");
			return NULL;
		}
		gw->counters->refs = 1;
	}
	gw->refs = 1;
	gw->config = config_ref(config);
	gw->cfg = cfg;
	for (size_t i = 0; i < config->n_gateways; i++) {
		const struct config_gateway *g = &config->gateways[i];

		if (g->authenticate_mode == CONFIG_AUTHENTICATE_PASS &&
		    strcmp(g->pass.from_gateway, cfg->name) == 0)
			gw->grants_passes = true;
	}
	return gw;
}

struct gateway *gateway_ref(struct gateway *gw)
{
	__atomic_add_fetch(&gw->refs, 1, __ATOMIC_RELAXED);
	return gw;
}

void gateway_unref(struct gateway *gw)
{
	if (gw == NULL || __atomic_sub_fetch(&gw->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (__atomic_sub_fetch(&gw->counters->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		credentials_slot_free(gw->counters->creds_now);
		user_sessions_free(gw->counters->per_user);
		free(gw->counters);
	}
	credentials_unref(gw->creds);
	tls_context_unref(gw->tls);
	tls_context_unref(gw->upstream_tls);
	gateway_free_pools(gw, gw->cfg);
	gateway_free_key(gw);
	config_unref(gw->config);
	free(gw);
}

void gateway_publish(struct gateway *gw)
{
	credentials_slot_set(gw->counters->creds_now, gw->creds);
}

void gateway_retire(struct gateway *gw)
{
	credentials_slot_set(gw->counters->creds_now, NULL);
}

bool gateway_session_begin(struct gateway *gw)
{
	unsigned n = __atomic_load_n(&gw->counters->sessions, __ATOMIC_RELAXED);

	do {
		if (n >= gw->cfg->max_sessions)
			return false;
	} while (!__atomic_compare_exchange_n(&gw->counters->sessions, &n, n + 1, true,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return true;
}

bool gateway_user_begin(struct gateway *gw, const char *user)
{
	return user_sessions_take(gw->counters->per_user, user, gw->cfg->max_sessions_per_user);
}

void gateway_user_end(struct gateway *gw, const char *user)
{
	user_sessions_drop(gw->counters->per_user, user);
}

void gateway_session_end(struct gateway *gw)
{
	__atomic_sub_fetch(&gw->counters->sessions, 1, __ATOMIC_RELAXED);
}
