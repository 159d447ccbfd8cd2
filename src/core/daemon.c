/* daemon: start-up, reload, shutdown and the accept path (see daemon.h). */
#include "daemon.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "admission.h"
#include "auth.h"
#include "carry.h"
#include "config.h"
#include "control.h"
#include "credentials.h"
#include "endpoints.h"
#include "exporter.h"
#include "fault.h"
#include "gateway.h"
#include "health.h"
#include "log.h"
#include "lograte.h"
#include "loop.h"
#include "notify.h"
#include "pamauth.h"
#include "penalty.h"
#include "record.h"
#include "session.h"
#include "worker.h"

/* Passes remembered at most (a login each), and the longest they may last
 * (pass.duration's bound). */
#define DAEMON_MAX_PASSES      65536
#define DAEMON_PASS_MAX_AGE_MS (86400 * 1000ull)
/* Recorded bytes waiting for the disk, all sessions together: beyond, chunks
 * are dropped from recordings (and counted), never held from the relay. */
#define DAEMON_RECORD_QUEUE (16u << 20)
#define DAEMON_STATUS_MS    1000
/* Sources whose unauthenticated connections are told apart in the summaries. */
#define DAEMON_LOGRATE_SOURCES 4096
#define DAEMON_RELOAD_WAITERS  16

struct daemon {
	const char *config_path;
	struct config *config;
	struct gateway **gws; /* one per config->gateways[i] */
	size_t n_gws;
	struct health **checks; /* the active checks of the gateways' pools */
	size_t n_checks;
	struct loop *loop;
	struct endpoints *endpoints;
	struct worker **workers;
	unsigned n_workers;
	struct auth_pool *auth;
	struct totp_replay *replay; /* verification codes used, across reloads */
	struct pamauth_pool *pam;   /* PAM transactions of auth = "pam" gateways */
	struct passes *passes;      /* logins that let binary clients in (pass gateways) */
	struct penalty_table *penalties;
	struct admission *admission;
	struct loop_io sig_io;
	struct loop_task reload_task;
	bool reload_queued;
	pid_t reload_waiters[DAEMON_RELOAD_WAITERS]; /* `sockgate --reload`s to answer */
	unsigned n_reload_waiters;
	struct lograte *lograte; /* lines of connections that never logged in */
	struct loop_timer status_timer;
	struct loop_timer watchdog_timer;
	uint64_t watchdog_usec;
	bool stall_logged; /* the watchdog is withheld, and the log says why */
	struct loop_task fault_task;
	bool fault_posted;
	char status[256];
	int exit_code;
	struct control *control;   /* sockgatectl's socket, or NULL */
	struct config *first;      /* the configuration at start: the control socket's */
	struct exporter *exporter; /* the metrics and their listener */
	struct recorder *recorder; /* the writer of session recordings */
	struct carry *carry;       /* relayed sessions a restart carries over, or NULL */
	struct notify_fd *passed;  /* what systemd passed in: sockets, the fd store */
	size_t n_passed;
	time_t started, loaded; /* the start, the last configuration loaded */
	char reload_error[ERRBUF_LEN];
	bool draining;
	uint64_t drain_until_ms;
	struct loop_timer drain_timer;
	struct loop_timer restart_timer; /* sockgatectl restart, after its answer */
};

/* ---- gateways ----------------------------------------------------------- */

static void daemon_free_gateways(struct gateway **gws, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gateway_unref(gws[i]);
	free(gws);
}

static struct gateway *daemon_find_gateway(struct gateway **gws, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(gws[i]->cfg->name, name) == 0)
			return gws[i];
	return NULL;
}

/* A check's time follows the user's hash, so users with another method or
 * cost than most can be told apart from unknown users by timing. Says so once
 * per file, for the configuration in force (after a start or a reload), or to
 * stderr for sockgate -t. */
static void daemon_warn_mixed_costs(struct gateway **gws, size_t n, bool to_stderr)
{
	for (size_t i = 0; i < n; i++) {
		const char *path = gws[i]->cfg->credentials_path;
		bool seen = false;
		char what[256], msg[PATH_MAX + 512];

		if (!credentials_mixed_costs(gws[i]->creds, what, sizeof(what)))
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = gws[j]->creds != NULL &&
			       strcmp(gws[j]->cfg->credentials_path, path) == 0;
		if (seen)
			continue;
		snprintf(msg, sizeof(msg),
			 "gateway %s: the users in %s have %s; put every user on one method and "
			 "cost (sockgate-passwd -m)",
			 gws[i]->cfg->name, path, what);
		if (to_stderr)
			fprintf(stderr, "sockgate: warning: %s\n", msg);
		else
			log_msg(LOG_WARNING, "%s", msg);
	}
}

static void daemon_warn_stderr(const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "sockgate: warning: %s\n", msg);
}

static void daemon_warn_log(const char *msg, void *arg)
{
	(void)arg;
	log_msg(LOG_WARNING, "%s", msg);
}

/* Certificates that expire within two weeks, or have: a renewal that did not
 * happen. */
#define DAEMON_CERT_WARN_DAYS 14

static void daemon_warn_certificates(struct gateway **gws, size_t n, bool to_stderr)
{
	for (size_t i = 0; i < n; i++) {
		long days;
		char subject[256], msg[PATH_MAX + 512];

		if (gws[i]->tls == NULL)
			continue;
		days = tls_context_days_left(gws[i]->tls);
		if (days >= DAEMON_CERT_WARN_DAYS)
			continue;
		tls_context_subject(gws[i]->tls, subject, sizeof(subject));
		snprintf(msg, sizeof(msg), "gateway %s: the TLS certificate %s (%s) %s %ld day%s",
			 gws[i]->cfg->name, gws[i]->cfg->tls.certificate_path, subject,
			 days < 0 ? "expired" : "expires in", days < 0 ? -days : days,
			 (days == 1 || days == -1) ? "" : "s");
		if (days < 0)
			strncat(msg, " ago", sizeof(msg) - strlen(msg) - 1);
		if (to_stderr)
			daemon_warn_stderr(msg, NULL);
		else
			daemon_warn_log(msg, NULL);
	}
}

/* Settings that work against each other (config_warnings()), and, for the
 * running daemon, sessions its descriptors cannot hold. */
static void daemon_warn_config(const struct config *cfg, bool to_stderr)
{
	struct rlimit rl;
	unsigned long long wanted = 64;

	(void)config_warnings(cfg, to_stderr ? daemon_warn_stderr : daemon_warn_log, NULL);
	if (to_stderr || getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return; /* sockgate -t does not run with the service's limits */
	for (size_t i = 0; i < cfg->n_gateways; i++)
		wanted += 2ull * cfg->gateways[i].max_sessions;
	if (rl.rlim_cur != RLIM_INFINITY && wanted > rl.rlim_cur)
		log_msg(LOG_WARNING,
			"the gateways' max_sessions need up to %llu descriptors (two per session), "
			"and the limit is %llu: accepting pauses when they run out (LimitNOFILE=)",
			wanted, (unsigned long long)rl.rlim_cur);
}

/* Builds the live gateways of cfg, loading every credentials file. */
static struct gateway **daemon_build_gateways(struct config *cfg, struct gateway **old,
					      size_t n_old, struct stats *stats, struct errbuf *err)
{
	struct gateway **gws = calloc(cfg->n_gateways, sizeof(*gws));

	if (gws == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < cfg->n_gateways; i++) {
		const struct config_gateway *g = &cfg->gateways[i];
		const struct gateway *prev = daemon_find_gateway(old, n_old, g->name);

		gws[i] = gateway_create(cfg, g, geteuid(), prev, err);
		if (gws[i] == NULL) {
			daemon_free_gateways(gws, i);
			return NULL;
		}
		if (stats != NULL && (gws[i]->stats = stats_gateway_get(stats, g->name)) == NULL) {
			daemon_free_gateways(gws, i + 1);
			errbuf_set(err, "out of memory");
			return NULL;
		}
	}
	return gws;
}

/* ---- accepting ---------------------------------------------------------- */

/* Logging-in connections of all gateways, for the start-up limits. */
static unsigned daemon_logging_in(const struct daemon *d)
{
	unsigned n = 0;

	for (unsigned i = 0; i < d->n_workers; i++)
		n += session_set_logging_in(worker_sessions(d->workers[i]));
	return n;
}

static void daemon_accept(struct gateway *gw, int fd, const struct sockaddr *peer,
			  socklen_t peerlen, void *arg)
{
	struct daemon *d = arg;
	uint64_t now = loop_now_ms(d->loop);
	struct session *s;
	uint32_t ticket;

	stats_inc(&gw->stats->accepted);
	if (!admission_admit(d->admission, &d->config->limits, gw, daemon_logging_in(d), fd, peer,
			     now, &ticket))
		return;
	s = session_create(gateway_ref(gw), fd, peer, peerlen);
	if (s == NULL) {
		gateway_unref(gw);
		admission_cancel(d->admission, gw, fd, peer, ticket, now);
		return;
	}
	session_start(s, worker_sessions(worker_least_loaded(d->workers, d->n_workers)), ticket);
}

/* ---- systemd ------------------------------------------------------------ */

/* A reload ends the passes of users it revoked (removed, password changed,
 * locked, expired) and of login gateways that are gone. */
struct daemon_pass_judge {
	struct daemon *d;
	struct gateway **gws;
	size_t n;
	time_t now;
};

static bool daemon_keep_pass(const char *gateway, const char *user, void *arg)
{
	struct daemon_pass_judge *j = arg;
	struct gateway *was = daemon_find_gateway(j->d->gws, j->d->n_gws, gateway);
	struct gateway *now = daemon_find_gateway(j->gws, j->n, gateway);

	if (now == NULL || !now->grants_passes)
		return false;
	if (was == NULL || was->creds == NULL || now->creds == NULL)
		return true; /* PAM's users are the directory's */
	return credentials_revoked(was->creds, now->creds, user, j->now) == NULL;
}

static void daemon_end_passes(struct daemon *d, struct gateway **gws, size_t n)
{
	struct daemon_pass_judge j = {d, gws, n, time(NULL)};
	size_t ended = d->passes != NULL ? passes_filter(d->passes, daemon_keep_pass, &j) : 0;

	if (ended > 0)
		log_msg(LOG_NOTICE, "reload ended %zu pass%s", ended, ended == 1 ? "" : "es");
}

/* Stops the active checks (the pools they check may be on their way out). */
static void daemon_stop_checks(struct daemon *d)
{
	for (size_t i = 0; i < d->n_checks; i++)
		health_stop(d->checks[i]);
	free(d->checks);
	d->checks = NULL;
	d->n_checks = 0;
}

/* Active checks for every pool of the gateways that ask for them. A check
 * that cannot start is logged; the pool then relies on passive marking. */
static void daemon_start_checks(struct daemon *d)
{
	size_t n = 0;

	for (size_t i = 0; i < d->n_gws; i++)
		if (d->gws[i]->cfg->health.enabled)
			n += 1 + d->gws[i]->cfg->n_targets;
	if (n == 0 || (d->checks = calloc(n, sizeof(*d->checks))) == NULL)
		return;
	for (size_t i = 0; i < d->n_gws; i++) {
		const struct gateway *gw = d->gws[i];
		struct errbuf err;

		if (!gw->cfg->health.enabled)
			continue;
		for (size_t t = 0; t <= gw->cfg->n_targets; t++) {
			struct pool *p = t == 0 ? gw->pool : gw->target_pools[t - 1];
			struct health *hc = health_start(d->loop, p, &gw->cfg->health, &err);

			if (hc == NULL)
				log_msg(LOG_ERR, "gateway %s: health checks not started: %s",
					gw->cfg->name, err.msg);
			else
				d->checks[d->n_checks++] = hc;
		}
	}
}

/* Upstream members down, over every pool. */
static unsigned daemon_upstreams_down(const struct daemon *d)
{
	unsigned n = 0;

	for (size_t i = 0; i < d->n_gws; i++) {
		n += pool_down(d->gws[i]->pool);
		for (size_t t = 0; t < d->gws[i]->cfg->n_targets; t++)
			n += pool_down(d->gws[i]->target_pools[t]);
	}
	return n;
}

static void daemon_update_status(struct daemon *d)
{
	unsigned sessions = 0, logging_in = 0, down = daemon_upstreams_down(d);
	char status[sizeof(d->status)], down_text[48] = "";

	for (unsigned i = 0; i < d->n_workers; i++) {
		sessions += session_set_count(worker_sessions(d->workers[i]));
		logging_in += session_set_logging_in(worker_sessions(d->workers[i]));
	}
	if (down > 0)
		snprintf(down_text, sizeof(down_text), ", %u upstream%s down", down,
			 down == 1 ? "" : "s");
	snprintf(status, sizeof(status),
		 "%u sessions, %u logging in, %u password checks pending, %u penalised sources%s",
		 sessions, logging_in, auth_pool_pending(d->auth),
		 penalty_active(d->penalties, loop_now_ms(d->loop)), down_text);
	/* Kept only once sent: a status that could not go out is tried again at
	 * the next update, so systemd's copy does not stay stale. */
	if (strcmp(status, d->status) != 0 && notify_status(status))
		memcpy(d->status, status, sizeof(status));
	exporter_publish(d->exporter, d->gws, d->n_gws, auth_pool_pending(d->auth),
			 penalty_active(d->penalties, loop_now_ms(d->loop)));
}

/* One line for what lograte counted of a source (or of the sources beyond
 * those it tells apart) instead of writing it. */
static void daemon_log_summary(const struct lograte_summary *sum, void *arg)
{
	char addr[NET_ADDRSTRLEN], sources[16], closed[24], refused[24], unreachable[24], dur[24];

	if (sum->source != NULL)
		net_format_host(sum->source, addr, sizeof(addr));
	snprintf(sources, sizeof(sources), "%u", sum->n_sources);
	snprintf(closed, sizeof(closed), "%lu", sum->counts[LOGRATE_CLOSED]);
	snprintf(refused, sizeof(refused), "%lu", sum->counts[LOGRATE_REFUSED]);
	snprintf(unreachable, sizeof(unreachable), "%lu", sum->counts[LOGRATE_UNREACHABLE]);
	snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(loop_clock_ms() - sum->since_ms));
	(void)arg;
	log_event(LOG_NOTICE, LOG_EV_UNAUTH_SUMMARY, "connections without login",
		  LOG_FIELDS({"REMOTE_ADDR", sum->source != NULL ? addr : "other"},
			     {"SOCKGATE_SOURCES", sum->source != NULL ? NULL : sources},
			     {"SOCKGATE_CLOSED", closed}, {"SOCKGATE_REFUSED", refused},
			     {"SOCKGATE_UNREACHABLE", unreachable}, {"DURATION_MS", dur}));
}

static void daemon_status_timer(struct loop_timer *t)
{
	struct daemon *d = t->arg;

	if (d->passes != NULL)
		passes_expire(d->passes, DAEMON_PASS_MAX_AGE_MS, loop_now_ms(d->loop));
	lograte_flush(d->lograte, loop_now_ms(d->loop), false, daemon_log_summary, d);
	daemon_update_status(d);
	loop_timer_arm(d->loop, t, DAEMON_STATUS_MS, daemon_status_timer, d);
}

/* The thread that has not shown progress for longer than limit_ms, as text for
 * the log ("sockgate-w0"); NULL if every one has. The main loop answers for
 * itself by running this. */
static const char *daemon_stalled_thread(struct daemon *d, uint64_t now_ms, uint64_t limit_ms,
					 char *name, size_t len, uint64_t *stalled_ms)
{
	for (unsigned i = 0; i < d->n_workers; i++) {
		*stalled_ms = worker_stalled_ms(d->workers[i], now_ms);
		if (*stalled_ms > limit_ms) {
			snprintf(name, len, "sockgate-w%u", worker_id(d->workers[i]));
			return name;
		}
	}
	*stalled_ms = auth_pool_stalled_ms(d->auth, now_ms);
	if (*stalled_ms > limit_ms) {
		snprintf(name, len, "sockgate-auth");
		return name;
	}
	return NULL;
}

/* WATCHDOG=1 only while every event loop and password check shows progress:
 * a wedged worker or check thread stops the pings, and systemd restarts the
 * daemon (WatchdogSec=). A thread counts as stalled after half the interval. */
static void daemon_watchdog_timer(struct loop_timer *t)
{
	struct daemon *d = t->arg;
	uint64_t now = loop_clock_ms(), stalled_ms;
	char name[32];
	const char *who = daemon_stalled_thread(d, now, d->watchdog_usec / 2000, name, sizeof(name),
						&stalled_ms);

	if (who == NULL) {
		/* Every quarter of the interval: a ping the notify socket had no
		 * room for still leaves three more before systemd's deadline. */
		(void)notify_watchdog();
		if (d->stall_logged)
			log_msg(LOG_NOTICE, "every thread shows progress again: watchdog resumed");
		d->stall_logged = false;
	} else if (!d->stall_logged) {
		char ms[24];

		snprintf(ms, sizeof(ms), "%llu", (unsigned long long)stalled_ms);
		log_event(LOG_CRIT, LOG_EV_STALLED, "thread stalled, watchdog withheld",
			  LOG_FIELDS({"SOCKGATE_THREAD", who}, {"DURATION_MS", ms}));
		d->stall_logged = true;
	}
	for (unsigned i = 0; i < d->n_workers; i++)
		worker_heartbeat(d->workers[i], now);
	loop_timer_arm(d->loop, t, d->watchdog_usec / 4000, daemon_watchdog_timer, d);
}

static void daemon_fault_hang_task(struct loop_task *t)
{
	struct daemon *d = t->arg;

	__atomic_store_n(&d->fault_posted, false, __ATOMIC_RELEASE);
	fault_block();
}

/* kill -USR2 with a value from enum fault_kind, in a build with faults. */
static void daemon_fault(struct daemon *d, int kind)
{
	log_msg(LOG_WARNING, "injected fault %d", kind);
	if (kind == FAULT_HANG_WORKER && d->n_workers > 0 &&
	    !__atomic_exchange_n(&d->fault_posted, true, __ATOMIC_ACQ_REL))
		loop_post(worker_loop(d->workers[0]), &d->fault_task, daemon_fault_hang_task, d);
	else if (kind == FAULT_HANG_AUTH)
		auth_pool_fault_hang(d->auth);
	else if (kind == FAULT_LIFT)
		fault_lift();
}

/* ---- penalties and revocation ------------------------------------------ */

static int daemon_configure_penalties(struct daemon *d, const struct config *cfg,
				      struct errbuf *err)
{
	const struct config_penalties *p = &cfg->penalties;
	struct penalty_settings set = {
		.enabled = p->enabled,
		.authfail_ms = p->authfail_ms,
		.grace_ms = p->grace_ms,
		.noauth_ms = p->noauth_ms,
		.min_ms = p->min_ms,
		.max_ms = p->max_ms,
		.ipv4_bits = p->ipv4_bits,
		.ipv6_bits = p->ipv6_bits,
		.per_source_startups = cfg->limits.per_source_startups,
		.exempt = p->exempt,
		.n_exempt = (unsigned)p->n_exempt,
	};

	return penalty_configure(d->penalties, &set, err);
}

/* What a reload hands to every worker to check its sessions against: the new
 * gateways, shared, freed by the last worker done with them. */
struct revoke_part {
	struct loop_task task;
	struct worker *worker;
	struct revoke_job *job;
};

struct revoke_job {
	int refs;
	size_t n_gws;
	struct gateway **gws; /* references */
	struct revoke_part parts[];
};

static void revoke_job_unref(struct revoke_job *job)
{
	if (__atomic_sub_fetch(&job->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < job->n_gws; i++)
		gateway_unref(job->gws[i]);
	free(job->gws);
	free(job);
}

static void daemon_revoke_task(struct loop_task *t)
{
	struct revoke_part *part = t->arg;

	session_set_revoke(worker_sessions(part->worker), part->job->gws, part->job->n_gws);
	revoke_job_unref(part->job);
}

/* revoke_on_reload: every worker ends the sessions the new gateways refuse. */
static void daemon_revoke(struct daemon *d)
{
	struct revoke_job *job = calloc(1, sizeof(*job) + d->n_workers * sizeof(job->parts[0]));

	if (job != NULL)
		job->gws = calloc(d->n_gws, sizeof(*job->gws));
	if (job == NULL || job->gws == NULL) {
		free(job);
		log_msg(LOG_ERR, "out of memory: sessions of revoked users were not checked");
		return;
	}
	job->n_gws = d->n_gws;
	for (size_t i = 0; i < d->n_gws; i++)
		job->gws[i] = gateway_ref(d->gws[i]);
	job->refs = (int)d->n_workers;
	for (unsigned i = 0; i < d->n_workers; i++) {
		job->parts[i].worker = d->workers[i];
		job->parts[i].job = job;
		loop_post(worker_loop(d->workers[i]), &job->parts[i].task, daemon_revoke_task,
			  &job->parts[i]);
	}
}

static const struct lograte_settings *daemon_lograte_settings(const struct config *cfg,
							      struct lograte_settings *set)
{
	set->per_source = cfg->log_limits.per_source;
	set->per_second = cfg->log_limits.per_second;
	set->interval_ms = cfg->log_limits.interval_ms;
	return set;
}

/* ---- reload and stop ---------------------------------------------------- */

static bool daemon_same_text(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The metrics listener follows a reload; the control socket does not (a
 * reload may come through it), so a change there waits for the restart. */
static void daemon_reload_listeners(struct daemon *d, const struct config *old)
{
	const struct config_control *was = &d->first->control, *now = &d->config->control,
				    *before = &old->control;
	struct errbuf err;

	/* Said when a reload departs from what the socket was started with, not
	 * at every reload after, nor when a reload comes back to it. */
	if (before->enabled == now->enabled && daemon_same_text(before->socket, now->socket) &&
	    daemon_same_text(before->group, now->group))
		was = now;
	if (was->enabled != now->enabled || !daemon_same_text(was->socket, now->socket) ||
	    !daemon_same_text(was->group, now->group))
		log_msg(LOG_NOTICE, "control socket settings changed: they take effect at the "
				    "next restart");
	if (exporter_configure(d->exporter, &d->config->metrics, &err) < 0)
		log_msg(LOG_ERR, "metrics listener not started: %s", err.msg);
}

static int daemon_reload(struct daemon *d)
{
	struct lograte_settings lset;
	struct errbuf err;
	struct config *cfg, *old;
	struct gateway **gws;

	notify_reloading();
	if (d->draining) {
		errbuf_set(&err, "draining: the daemon is on its way out");
		goto failed;
	}
	cfg = config_load(d->config_path, &err);
	if (cfg == NULL)
		goto failed;
	gws = daemon_build_gateways(cfg, d->gws, d->n_gws, exporter_stats(d->exporter), &err);
	if (gws == NULL) {
		config_unref(cfg);
		goto failed;
	}
	if (endpoints_bind(d->endpoints, gws, cfg->n_gateways, &err) < 0) {
		daemon_free_gateways(gws, cfg->n_gateways);
		config_unref(cfg);
		goto failed;
	}
	/* Nothing below fails but for memory, and then the old settings stay. */
	if (daemon_configure_penalties(d, cfg, &err) < 0)
		log_msg(LOG_ERR, "penalty settings not updated: %s", err.msg);
	lograte_configure(d->lograte, daemon_lograte_settings(cfg, &lset));
	/* Logins under way check their passwords against the new credentials. */
	for (size_t i = 0; i < cfg->n_gateways; i++)
		gateway_publish(gws[i]);
	for (size_t i = 0; i < d->n_gws; i++)
		if (daemon_find_gateway(gws, cfg->n_gateways, d->gws[i]->cfg->name) == NULL)
			gateway_retire(d->gws[i]);
	daemon_stop_checks(d);
	daemon_end_passes(d, gws, cfg->n_gateways);
	daemon_free_gateways(d->gws, d->n_gws);
	old = d->config;
	d->config = cfg;
	d->gws = gws;
	d->n_gws = cfg->n_gateways;
	daemon_reload_listeners(d, old);
	config_unref(old);
	daemon_start_checks(d);
	daemon_update_status(d);
	d->loaded = time(NULL);
	log_event(LOG_NOTICE, LOG_EV_RELOADED, "configuration reloaded",
		  LOG_FIELDS({"SOCKGATE_CONFIG", d->config_path}));
	daemon_warn_mixed_costs(d->gws, d->n_gws, false);
	daemon_warn_certificates(d->gws, d->n_gws, false);
	daemon_warn_config(d->config, false);
	if (cfg->revoke_on_reload)
		daemon_revoke(d);
	notify_ready(d->status);
	return 0;
failed:
	snprintf(d->reload_error, sizeof(d->reload_error), "%s", err.msg);
	log_event(LOG_ERR, LOG_EV_RELOAD_FAILED, "reload failed, keeping the running configuration",
		  LOG_FIELDS({"SOCKGATE_CONFIG", d->config_path}, {"REASON", err.msg}));
	notify_ready(d->status);
	return -1;
}

static void daemon_reload_task(struct loop_task *t)
{
	struct daemon *d = t->arg;
	union sigval v;

	d->reload_queued = false;
	/* READY=1 is sent before the answer, so systemd has it before it sees
	 * the requester exit. */
	v.sival_int = daemon_reload(d) == 0 ? 0 : 1;
	for (unsigned i = 0; i < d->n_reload_waiters; i++)
		if (sigqueue(d->reload_waiters[i], SIGUSR1, v) < 0)
			log_msg(LOG_WARNING, "cannot answer the reload request of process %ld: %s",
				(long)d->reload_waiters[i], strerror(errno));
	d->n_reload_waiters = 0;
}

static void daemon_signal_cb(struct loop_io *io, uint32_t events)
{
	struct daemon *d = io->arg;
	struct signalfd_siginfo si;

	(void)events;
	while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			if (si.ssi_code == SI_QUEUE && si.ssi_int == DAEMON_RELOAD_COOKIE &&
			    si.ssi_pid != 0 && d->n_reload_waiters < DAEMON_RELOAD_WAITERS)
				d->reload_waiters[d->n_reload_waiters++] = (pid_t)si.ssi_pid;
			/* Not inside this batch: a listener the reload removes may still
			 * have an event in it. Several SIGHUPs make one reload. */
			if (!d->reload_queued) {
				d->reload_queued = true;
				loop_defer(d->loop, &d->reload_task, daemon_reload_task, d);
			}
			break;
		case SIGTERM:
		case SIGINT:
			loop_stop(d->loop);
			break;
		case SIGUSR2:
			if (fault_enabled() && si.ssi_code == SI_QUEUE)
				daemon_fault(d, si.ssi_int);
			break;
		default:
			break;
		}
	}
}

static int daemon_setup_signals(struct daemon *d, struct errbuf *err)
{
	sigset_t set;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (fault_enabled())
		sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return errbuf_errno(err, errno, "sigprocmask");
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return errbuf_errno(err, errno, "signalfd");
	if (loop_io_add(d->loop, &d->sig_io, fd, EPOLLIN, daemon_signal_cb, d) < 0) {
		close(fd);
		return errbuf_errno(err, errno, "epoll_ctl");
	}
	return 0;
}

/* Each session takes up to two descriptors: use all the hard limit allows.
 * (Under the shipped unit LimitNOFILE= sets both limits, and setrlimit is
 * filtered: failing here is fine.) */
static void daemon_raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static unsigned daemon_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

static int daemon_start_workers(struct daemon *d, struct errbuf *err)
{
	unsigned n = d->config->workers != 0 ? d->config->workers : daemon_cpus();
	struct auth_pool_settings auth = {
		.threads = d->config->auth_threads,
		.threads_relaying = d->config->auth_threads_relaying,
		.max_queue = d->config->limits.auth_queue,
		.background = true,
	};
	struct pamauth_pool_settings pam = {
		.threads = d->config->limits.pam_threads,
		.max_queue = d->config->limits.auth_queue,
	};

	/* Codes used are remembered for the daemon's life: reloads keep them. */
	d->replay = totp_replay_create();
	if (d->replay == NULL)
		return errbuf_set(err, "out of memory");
	auth.replay = d->replay;
	d->auth = auth_pool_create(&auth, err);
	if (d->auth == NULL)
		return -1;
	d->pam = pamauth_pool_create(&pam, err);
	if (d->pam == NULL)
		return -1;
	d->passes = passes_create(DAEMON_MAX_PASSES);
	if (d->passes == NULL)
		return errbuf_set(err, "out of memory");
	/* Always: a reload may turn recording on. Idle, it is a sleeping thread. */
	d->recorder = recorder_create(DAEMON_RECORD_QUEUE, err);
	if (d->recorder == NULL)
		return -1;
	d->workers = calloc(n, sizeof(*d->workers));
	if (d->workers == NULL)
		return errbuf_set(err, "out of memory");
	for (; d->n_workers < n; d->n_workers++) {
		struct worker_settings ws = {
			.id = d->n_workers,
			.auth = d->auth,
			.pam = d->pam,
			.admission = d->admission,
			.passes = d->passes,
			.penalties = d->penalties,
			.lograte = d->lograte,
			.stats = exporter_stats(d->exporter),
			.recorder = d->recorder,
			.carry = d->carry,
			.scratch_len = d->config->relay_buffer,
		};
		struct worker *w = worker_create(&ws, err);

		if (w == NULL)
			return -1;
		d->workers[d->n_workers] = w;
		if (worker_start(w, err) < 0) {
			d->n_workers++;
			return -1;
		}
	}
	return 0;
}

static void daemon_close_passed(struct daemon *d);

static void daemon_shutdown(struct daemon *d)
{
	int sigfd = d->sig_io.fd;

	/* Order matters: no new connections, then every pending password check
	 * returns to its session, then the workers close their sessions. */
	endpoints_free(d->endpoints);
	d->endpoints = NULL;
	control_stop(d->control);
	d->control = NULL;
	if (d->loop != NULL) {
		loop_timer_disarm(d->loop, &d->drain_timer);
		loop_timer_disarm(d->loop, &d->restart_timer);
	}
	daemon_stop_checks(d);
	if (d->auth != NULL)
		auth_pool_stop(d->auth);
	if (d->pam != NULL)
		pamauth_pool_stop(d->pam);
	/* Under the fd store a stop hands the relayed sessions over: a restart
	 * takes them back, and at a plain stop systemd closes what it kept. */
	for (unsigned i = 0; i < d->n_workers; i++) {
		if (d->carry != NULL && !d->draining)
			worker_hand_over(d->workers[i]);
		else
			worker_stop(d->workers[i], "shutdown");
		worker_free(d->workers[i]);
	}
	free(d->workers);
	if (d->carry != NULL && !d->draining && d->n_workers > 0)
		carry_set_planned(d->carry);
	carry_free(d->carry);
	d->carry = NULL;
	daemon_close_passed(d);
	/* The sessions closed their recordings: what is queued is written now. */
	recorder_free(d->recorder);
	d->recorder = NULL;
	auth_pool_free(d->auth);
	d->auth = NULL;
	pamauth_pool_free(d->pam);
	d->pam = NULL;
	passes_free(d->passes);
	d->passes = NULL;
	totp_replay_free(d->replay);
	d->replay = NULL;
	if (d->loop != NULL) {
		loop_timer_disarm(d->loop, &d->status_timer);
		loop_timer_disarm(d->loop, &d->watchdog_timer);
		loop_io_del(d->loop, &d->sig_io);
	}
	if (sigfd >= 0)
		close(sigfd);
	daemon_free_gateways(d->gws, d->n_gws);
	config_unref(d->config);
	config_unref(d->first);
	exporter_free(d->exporter);
	admission_free(d->admission);
	penalty_free(d->penalties);
	if (d->lograte != NULL)
		lograte_flush(d->lograte, loop_clock_ms(), true, daemon_log_summary, d);
	lograte_free(d->lograte);
	loop_free(d->loop);
}

/* ---- sockgatectl ----------------------------------------------------------- */

static struct gateway **daemon_ctl_gateways(void *arg, size_t *n)
{
	struct daemon *d = arg;

	*n = d->n_gws;
	return d->gws;
}

static void daemon_ctl_row(struct table *t, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void daemon_ctl_row(struct table *t, const char *key, const char *fmt, ...)
{
	char value[512];
	const char *cells[2] = {key, value};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	(void)table_add(t, cells);
}

static void daemon_ctl_status(void *arg, struct table *t)
{
	struct daemon *d = arg;
	char when[32];
	struct tm tm;
	unsigned sessions = 0, logging_in = 0;

	for (unsigned i = 0; i < d->n_workers; i++) {
		sessions += session_set_count(worker_sessions(d->workers[i]));
		logging_in += session_set_logging_in(worker_sessions(d->workers[i]));
	}
	daemon_ctl_row(t, "version", "%s", SOCKGATE_VERSION);
	daemon_ctl_row(t, "pid", "%ld", (long)getpid());
	daemon_ctl_row(t, "uptime_s", "%lld", (long long)(time(NULL) - d->started));
	daemon_ctl_row(t, "config", "%s", d->config_path);
	gmtime_r(&d->loaded, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	daemon_ctl_row(t, "loaded", "%s", when);
	daemon_ctl_row(t, "workers", "%u", d->n_workers);
	daemon_ctl_row(t, "sessions", "%u", sessions);
	daemon_ctl_row(t, "logging_in", "%u", logging_in);
	daemon_ctl_row(t, "relaying", "%u", sessions - logging_in);
	for (size_t i = 0; i < d->n_gws; i++) {
		char key[96];

		snprintf(key, sizeof(key), "gateway.%s.sessions", d->gws[i]->cfg->name);
		daemon_ctl_row(t, key, "%u",
			       __atomic_load_n(&d->gws[i]->counters->sessions, __ATOMIC_RELAXED));
		snprintf(key, sizeof(key), "gateway.%s.logging_in", d->gws[i]->cfg->name);
		daemon_ctl_row(t, key, "%u",
			       __atomic_load_n(&d->gws[i]->counters->logging_in, __ATOMIC_RELAXED));
	}
	daemon_ctl_row(t, "password_checks_pending", "%u", auth_pool_pending(d->auth));
	daemon_ctl_row(t, "penalised_sources", "%u",
		       penalty_active(d->penalties, loop_now_ms(d->loop)));
	daemon_ctl_row(t, "upstreams_down", "%u", daemon_upstreams_down(d));
	daemon_ctl_row(t, "passes", "%zu", passes_count(d->passes));
	daemon_ctl_row(t, "draining", "%s", d->draining ? "yes" : "no");
}

static int daemon_ctl_reload(void *arg, char *why, size_t len)
{
	struct daemon *d = arg;

	if (daemon_reload(d) == 0)
		return 0;
	snprintf(why, len, "reload failed: %s", d->reload_error);
	return -1;
}

/* Draining: once a second (and at once) the sessions are counted; none left,
 * or the deadline passed, and the loop stops (the sessions left are closed
 * as at any stop). */
static void daemon_drain_check(struct loop_timer *t)
{
	struct daemon *d = t->arg;
	unsigned sessions = 0;
	char status[96];

	for (unsigned i = 0; i < d->n_workers; i++)
		sessions += session_set_count(worker_sessions(d->workers[i]));
	if (sessions == 0 || loop_now_ms(d->loop) >= d->drain_until_ms) {
		log_msg(LOG_NOTICE, "drained: %u session%s left, stopping", sessions,
			sessions == 1 ? "" : "s");
		loop_stop(d->loop);
		return;
	}
	snprintf(status, sizeof(status), "draining: %u session%s left", sessions,
		 sessions == 1 ? "" : "s");
	(void)notify_status(status);
	(void)loop_timer_arm(d->loop, &d->drain_timer, 200, daemon_drain_check, d);
}

static void daemon_ctl_drain(void *arg, unsigned timeout_s)
{
	struct daemon *d = arg;

	if (d->draining) {
		/* A second drain may bring the end closer, never push it back. */
		uint64_t until =
			loop_now_ms(d->loop) + (timeout_s > 0 ? timeout_s : 3600) * 1000ull;

		if (until < d->drain_until_ms)
			d->drain_until_ms = until;
		return;
	}
	d->draining = true;
	d->drain_until_ms = loop_now_ms(d->loop) + (timeout_s > 0 ? timeout_s : 3600) * 1000ull;
	/* No new connections: the listeners close (the balancer's checks fail),
	 * also the copies systemd's fd store kept. */
	endpoints_forget_stored(d->endpoints);
	endpoints_free(d->endpoints);
	d->endpoints = NULL;
	log_msg(LOG_NOTICE,
		"draining: no new connections, stopping when the last session "
		"ends or in %u s",
		timeout_s > 0 ? timeout_s : 3600);
	(void)loop_timer_arm(d->loop, &d->drain_timer, 0, daemon_drain_check, d);
}

static void daemon_restart_now(struct loop_timer *t)
{
	struct daemon *d = t->arg;

	log_msg(LOG_NOTICE, "restarting: handing the relayed sessions over");
	loop_stop(d->loop);
}

/* sockgatectl restart: as systemctl restart, from the daemon's side: hand the
 * sessions over, exit with DAEMON_EXIT_RESTART, which the unit's
 * RestartForceExitStatus= makes systemd start anew. Without the fd store the
 * restart would end every session: refused. */
static int daemon_ctl_restart(void *arg, char *why, size_t len)
{
	struct daemon *d = arg;

	if (d->carry == NULL) {
		snprintf(why, len,
			 "restart needs systemd's fd store (FDSTORE=, the shipped unit): "
			 "without it the sessions would end; use systemctl restart");
		return -1;
	}
	if (d->draining) {
		snprintf(why, len, "draining: the daemon is on its way out");
		return -1;
	}
	d->exit_code = DAEMON_EXIT_RESTART;
	/* After this round: the answer goes out first. */
	(void)loop_timer_arm(d->loop, &d->restart_timer, 0, daemon_restart_now, d);
	return 0;
}

static void daemon_start_control(struct daemon *d)
{
	struct control_env env = {
		.loop = d->loop,
		.workers = d->workers,
		.n_workers = d->n_workers,
		.penalties = d->penalties,
		.passes = d->passes,
		.arg = d,
		.gateways = daemon_ctl_gateways,
		.status = daemon_ctl_status,
		.reload = daemon_ctl_reload,
		.drain = daemon_ctl_drain,
		.restart = daemon_ctl_restart,
	};
	struct errbuf err;

	if (!d->config->control.enabled)
		return;
	d->control = control_start(&d->config->control, &env, &err);
	if (d->control == NULL)
		log_msg(LOG_ERR, "control socket not started: %s", err.msg);
}

/* ---- carried sessions (systemd's fd store) ------------------------------ */

/* Sessions the store has room for: FDSTORE= (FileDescriptorStoreMax=), two
 * per session, the listeners and CARRY_MAX_FDS allowed for. */
static size_t daemon_carry_max(void)
{
	const char *e = getenv("FDSTORE");
	unsigned long n = e != NULL ? strtoul(e, NULL, 10) : 0;

	if (n > CARRY_MAX_FDS)
		n = CARRY_MAX_FDS;
	return n > 64 ? (n - 64) / 2 : 0;
}

/* What systemd passed in; the fd store on, a carry file opened in the state
 * directory. Before the workers start. */
static int daemon_take_passed(struct daemon *d, struct errbuf *err)
{
	const char *dir = getenv("STATE_DIRECTORY");
	int n = notify_listen_fds(&d->passed, err);

	if (n < 0)
		return -1;
	d->n_passed = (size_t)n;
	if (!notify_fdstore_enabled())
		return 0;
	endpoints_use_fdstore(d->endpoints);
	if (dir == NULL || dir[0] == '\0') {
		log_msg(LOG_WARNING, "fd store: no StateDirectory= for the carry file: a restart "
				     "keeps the listening sockets, not the sessions");
		return 0;
	}
	{
		char first[PATH_MAX];
		struct errbuf why;

		/* STATE_DIRECTORY lists every StateDirectory=, ':'-separated. */
		snprintf(first, sizeof(first), "%.*s", (int)strcspn(dir, ":"), dir);
		d->carry = carry_open(first, daemon_carry_max(), &why);
		if (d->carry == NULL)
			log_msg(LOG_WARNING,
				"fd store: %s: a restart keeps the listening sockets, "
				"not the sessions",
				why.msg);
	}
	return 0;
}

/* A carried session's socket from the store (by its slot), taken out of the
 * list; -1 if the store did not have it. */
static int daemon_take_session_fd(struct daemon *d, int slot, bool client)
{
	char name[CARRY_NAME_MAX];

	carry_session_name(slot, client, name, sizeof(name));
	for (size_t i = 0; i < d->n_passed; i++)
		if (d->passed[i].fd >= 0 && strcmp(d->passed[i].name, name) == 0) {
			int fd = d->passed[i].fd;

			d->passed[i].fd = -1;
			return fd;
		}
	return -1;
}

/* A carried session that cannot go on: out of the store, closed (the client
 * and the upstream see the end), its record dropped. */
static void daemon_end_carried(struct daemon *d, const struct carry_record *r, int slot, int cfd,
			       int ufd, const char *why)
{
	char name[CARRY_NAME_MAX];

	for (int kind = 0; kind < 2; kind++) {
		int fd = kind == 0 ? cfd : ufd;

		carry_session_name(slot, kind == 0, name, sizeof(name));
		(void)notify_fdstore_remove(name);
		if (fd >= 0) {
			(void)shutdown(fd, SHUT_RDWR);
			close(fd);
		}
	}
	carry_drop(d->carry, slot);
	log_event(LOG_NOTICE, LOG_EV_CARRIED, "carried session ended",
		  LOG_FIELDS({"SOCKGATE_GATEWAY", r->gateway},
			     {"SOCKGATE_USER", r->user[0] != '\0' ? r->user : NULL},
			     {"SOCKGATE_SESSION", r->id}, {"REASON", why}));
}

static uint64_t daemon_age_ms(int64_t then_unix_ms, int64_t now_unix_ms)
{
	return then_unix_ms > 0 && then_unix_ms < now_unix_ms
		       ? (uint64_t)(now_unix_ms - then_unix_ms)
		       : 0;
}

/* One carried session: on a worker again, with the bytes it held; NULL why
 * when it goes on. */
static const char *daemon_resume_one(struct daemon *d, const struct carry_record *r, int slot,
				     int cfd, int ufd, int64_t now_unix_ms)
{
	struct gateway *gw = daemon_find_gateway(d->gws, d->n_gws, r->gateway);
	char *held[2] = {NULL, NULL};
	size_t held_len[2] = {0, 0};
	const char *why = NULL;
	struct session *s;

	if (cfd < 0 || ufd < 0)
		return "its sockets were not kept by systemd";
	if (gw == NULL)
		return "its gateway is no longer configured";
	/* Removed, locked or expired since: as a reload with revoke_on_reload. */
	if (gw->creds != NULL && r->user[0] != '\0' &&
	    (why = credentials_revoked(gw->creds, gw->creds, r->user, time(NULL))) != NULL)
		return why;
	/* A hole in its stream is worse than its end. */
	if (r->held_in == CARRY_HELD_LOST || r->held_out == CARRY_HELD_LOST)
		return "the bytes it held at the restart could not be saved";
	if (carry_take(d->carry, r->id, true, r->held_in, &held[1], &held_len[1]) < 0 ||
	    carry_take(d->carry, r->id, false, r->held_out, &held[0], &held_len[0]) < 0) {
		free(held[0]);
		free(held[1]);
		return "the bytes it held at the restart could not be read back";
	}
	s = session_resume(gateway_ref(gw), cfd, ufd, r, slot, &why);
	if (s == NULL) {
		gateway_unref(gw);
	} else if (session_resume_held(s, true, held[1], held_len[1]) < 0 ||
		   session_resume_held(s, false, held[0], held_len[0]) < 0) {
		why = "out of memory";
		session_abandon(s);
	}
	free(held[0]);
	free(held[1]);
	if (why != NULL)
		return why;
	session_start_resumed(s, worker_sessions(worker_least_loaded(d->workers, d->n_workers)),
			      daemon_age_ms(r->started_unix_ms, now_unix_ms),
			      daemon_age_ms(r->login_unix_ms, now_unix_ms));
	log_event(LOG_INFO, LOG_EV_CARRIED, "session resumed",
		  LOG_FIELDS({"SOCKGATE_GATEWAY", r->gateway},
			     {"SOCKGATE_USER", r->user[0] != '\0' ? r->user : NULL},
			     {"UPSTREAM", r->upstream}, {"SOCKGATE_SESSION", r->id}));
	return NULL;
}

static bool daemon_passed_sessions(const struct daemon *d)
{
	int slot;
	bool client;

	for (size_t i = 0; i < d->n_passed; i++)
		if (carry_session_fd_name(d->passed[i].name, &slot, &client))
			return true;
	return false;
}

/* The relayed sessions the process before kept in the fd store: each goes on,
 * or ends with its reason in the log. After a crash the bytes that were
 * inside the old process are lost: the log says so. */
static void daemon_resume(struct daemon *d)
{
	const struct carry_record *records;
	const int *slots;
	size_t n = d->carry != NULL ? carry_found(d->carry, &records, &slots) : 0;
	unsigned resumed = 0, ended = 0, strays = 0;
	int slot;
	bool client;
	struct timespec ts;
	int64_t now_unix_ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	now_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	/* A stop or a reboot came between: systemd kept none of their sockets,
	 * and the records describe sessions long gone. */
	if (n > 0 && !daemon_passed_sessions(d)) {
		for (size_t i = 0; i < n; i++)
			carry_drop(d->carry, slots[i]);
		log_msg(LOG_INFO,
			"forgot %zu carried session%s: systemd kept none of their sockets "
			"(the service was stopped in between)",
			n, n == 1 ? "" : "s");
		carry_sweep(d->carry);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct carry_record *r = &records[i];
		int cfd = daemon_take_session_fd(d, slots[i], true);
		int ufd = daemon_take_session_fd(d, slots[i], false);
		const char *why = daemon_resume_one(d, r, slots[i], cfd, ufd, now_unix_ms);

		if (why != NULL) {
			daemon_end_carried(d, r, slots[i], cfd, ufd, why);
			ended++;
		} else {
			resumed++;
		}
	}
	/* Sockets of sessions whose record is gone (another build's layout). */
	for (size_t i = 0; i < d->n_passed; i++)
		if (d->passed[i].fd >= 0 &&
		    carry_session_fd_name(d->passed[i].name, &slot, &client)) {
			(void)notify_fdstore_remove(d->passed[i].name);
			(void)shutdown(d->passed[i].fd, SHUT_RDWR);
			close(d->passed[i].fd);
			d->passed[i].fd = -1;
			strays++;
		}
	if (strays > 0)
		log_msg(LOG_WARNING, "closed %u carried socket%s without a record", strays,
			strays == 1 ? "" : "s");
	if (d->carry != NULL)
		carry_sweep(d->carry);
	if (resumed + ended == 0)
		return;
	if (carry_was_planned(d->carry))
		log_msg(LOG_NOTICE,
			"took over %u relayed session%s from the process before (%u "
			"could not go on)",
			resumed, resumed == 1 ? "" : "s", ended);
	else
		log_msg(LOG_WARNING,
			"took over %u relayed session%s after the process before ended without "
			"handing them over (%u could not go on): bytes it had read and not yet "
			"written are lost",
			resumed, resumed == 1 ? "" : "s", ended);
}

/* What systemd passed and nobody took (the fd list itself). */
static void daemon_close_passed(struct daemon *d)
{
	notify_fds_free(d->passed, d->n_passed);
	d->passed = NULL;
	d->n_passed = 0;
}

int daemon_run(const char *config_path)
{
	struct daemon d = {.config_path = config_path, .sig_io.fd = -1, .exit_code = 1};
	struct errbuf err = {""};
	struct lograte_settings lset;

	/* Relay remainders are up to 256 KiB: keep them on the heap instead of a
	 * fresh mmap() each time. */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	notify_setup_logging();

	d.config = config_load(config_path, &err);
	if (d.config == NULL) {
		log_event(LOG_ERR, LOG_EV_CONFIG_ERROR, "configuration error",
			  LOG_FIELDS({"SOCKGATE_CONFIG", config_path}, {"REASON", err.msg}));
		return 1;
	}
	d.first = config_ref(d.config);
	d.exporter = exporter_create(&err);
	d.gws = d.exporter != NULL
			? daemon_build_gateways(d.config, NULL, 0, exporter_stats(d.exporter), &err)
			: NULL;
	if (d.gws == NULL) {
		log_event(LOG_ERR, LOG_EV_CONFIG_ERROR, "configuration error",
			  LOG_FIELDS({"SOCKGATE_CONFIG", config_path}, {"REASON", err.msg}));
		goto out;
	}
	d.n_gws = d.config->n_gateways;
	daemon_raise_fd_limit();
	d.loop = loop_create(&err);
	d.penalties = penalty_create(d.config->penalties.max_sources, &err);
	if (d.penalties != NULL)
		d.lograte = lograte_create(DAEMON_LOGRATE_SOURCES,
					   daemon_lograte_settings(d.config, &lset), &err);
	if (d.lograte != NULL)
		d.admission = admission_create(d.penalties, d.lograte, &err);
	if (d.loop != NULL && d.admission != NULL)
		d.endpoints = endpoints_create(d.loop, daemon_accept, &d, &err);
	if (d.endpoints == NULL || daemon_configure_penalties(&d, d.config, &err) < 0 ||
	    daemon_setup_signals(&d, &err) < 0 || daemon_take_passed(&d, &err) < 0 ||
	    daemon_start_workers(&d, &err) < 0 ||
	    endpoints_inherit(d.endpoints, d.gws, d.n_gws, d.passed, d.n_passed, &err) < 0 ||
	    endpoints_bind(d.endpoints, d.gws, d.n_gws, &err) < 0 ||
	    exporter_configure(d.exporter, &d.config->metrics, &err) < 0) {
		log_msg(LOG_ERR, "cannot start: %s", err.msg);
		goto out;
	}
	d.exit_code = 0;
	d.started = d.loaded = time(NULL);
	daemon_resume(&d);
	daemon_start_checks(&d);
	daemon_start_control(&d);
	daemon_update_status(&d);
	loop_timer_arm(d.loop, &d.status_timer, DAEMON_STATUS_MS, daemon_status_timer, &d);
	d.watchdog_usec = notify_watchdog_usec();
	if (d.watchdog_usec > 0)
		loop_timer_arm(d.loop, &d.watchdog_timer, d.watchdog_usec / 4000,
			       daemon_watchdog_timer, &d);
	{
		char workers[16];

		snprintf(workers, sizeof(workers), "%u", d.n_workers);
		log_event(LOG_INFO, LOG_EV_STARTED, "started",
			  LOG_FIELDS({"SOCKGATE_VERSION", SOCKGATE_VERSION},
				     {"SOCKGATE_CONFIG", config_path},
				     {"SOCKGATE_WORKERS", workers}));
	}
	daemon_warn_mixed_costs(d.gws, d.n_gws, false);
	daemon_warn_certificates(d.gws, d.n_gws, false);
	daemon_warn_config(d.config, false);
	notify_ready(d.status);
	if (loop_run(d.loop) < 0) {
		log_msg(LOG_CRIT, "main event loop failed: %s", strerror(errno));
		d.exit_code = 1;
	}
	notify_stopping();
	log_event(LOG_INFO, LOG_EV_STOPPING, "stopping", NULL, 0);
out:
	daemon_shutdown(&d);
	return d.exit_code;
}

int daemon_check(const char *config_path)
{
	struct errbuf err;
	struct config *cfg = config_load(config_path, &err);
	struct gateway **gws;

	if (cfg == NULL) {
		fprintf(stderr, "sockgate: %s\n", err.msg);
		return 1;
	}
	gws = daemon_build_gateways(cfg, NULL, 0, NULL, &err);
	if (gws == NULL) {
		fprintf(stderr, "sockgate: %s\n", err.msg);
		config_unref(cfg);
		return 1;
	}
	daemon_warn_mixed_costs(gws, cfg->n_gateways, true);
	daemon_warn_certificates(gws, cfg->n_gateways, true);
	daemon_warn_config(cfg, true);
	printf("sockgate: configuration %s ok (%zu gateway%s)\n", config_path, cfg->n_gateways,
	       cfg->n_gateways == 1 ? "" : "s");
	daemon_free_gateways(gws, cfg->n_gateways);
	config_unref(cfg);
	return 0;
}
