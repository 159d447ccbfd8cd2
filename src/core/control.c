/* control: the control socket (see control.h). */
#include "control.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlproto.h"
#include "log.h"
#include "passes.h"
#include "penalty.h"
#include "pool.h"
#include "session.h"

#define CONTROL_MAX_CONNS   8    /* clients at once */
#define CONTROL_DEADLINE_MS 5000 /* to send the request and read the answer */
#define CONTROL_WORKER_MS   2000 /* a worker's share of an answer */
#define CONTROL_MAX_ANSWER  (64u << 20)

struct control_conn {
	struct control *c;
	int fd;
	bool used;
	uid_t uid;
	struct loop_io io;
	struct loop_timer deadline;
	char req[CTL_MAX_REQUEST];
	size_t req_len;
	char *out;
	size_t out_len, out_sent;
	bool draining; /* answered: read to the peer's end, so it sees no reset */
};

struct control {
	struct control_env env;
	char path[108];
	bool have_group;
	gid_t gid;
	int fd;
	struct loop_io io;
	struct control_conn conns[CONTROL_MAX_CONNS];
	uint64_t refused_log_ms;   /* the last refusal logged */
	unsigned refused_unlogged; /* refusals since, not logged one by one */
};

static void control_conn_end(struct control_conn *k)
{
	loop_timer_disarm(k->c->env.loop, &k->deadline);
	loop_io_del(k->c->env.loop, &k->io);
	close(k->fd);
	free(k->out);
	k->out = NULL;
	k->used = false;
}

/* Whether the peer is root or holds the control group, as its primary or a
 * supplementary group: the credentials its process had when it connected
 * (SO_PEERCRED, SO_PEERGROUPS), as for a file's group permission, not what
 * the group database says now. */
static bool control_allowed(const struct control *c, int fd, const struct ucred *cred)
{
	gid_t some[64], *groups = some;
	socklen_t len = sizeof(some);
	bool member = false;

	if (cred->uid == 0)
		return true;
	if (!c->have_group)
		return false;
	if (cred->gid == c->gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
		/* ERANGE: more than fit here; len now says how many bytes. */
		if (errno != ERANGE || (groups = malloc(len)) == NULL)
			return false;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
			len = 0;
	}
	for (size_t i = 0; i < len / sizeof(gid_t) && !member; i++)
		member = groups[i] == c->gid;
	if (groups != some)
		free(groups);
	return member;
}

static int out_add(struct control_conn *k, const char *s)
{
	size_t n = strlen(s);
	char *grown;

	if (k->out_len + n > CONTROL_MAX_ANSWER)
		return -1;
	grown = realloc(k->out, k->out_len + n + 1);
	if (grown == NULL)
		return -1;
	memcpy(grown + k->out_len, s, n + 1);
	k->out = grown;
	k->out_len += n;
	return 0;
}

/* ---- the commands ---------------------------------------------------------- */

struct control_call {
	const struct session_filter *f;
	struct table *t;
	const char *reason;
	unsigned killed;
};

static void control_describe(struct session_set *set, void *arg)
{
	struct control_call *call = arg;

	session_set_describe(set, call->f, call->t);
}

static void control_kill_on(struct session_set *set, void *arg)
{
	struct control_call *call = arg;

	call->killed += session_set_kill(set, call->f, call->reason);
}

static void control_penalty_row(const char *source, bool refused, uint64_t left_ms,
				unsigned startups, void *arg)
{
	char left[24], starting[16];
	const char *cells[4] = {source, refused ? "refused" : "counting", left, starting};

	snprintf(left, sizeof(left), "%llu", (unsigned long long)(left_ms + 999) / 1000);
	snprintf(starting, sizeof(starting), "%u", startups);
	(void)table_add(arg, cells);
}

static void control_pass_row(const char *gateway, const char *addr, const char *user,
			     const char *target, uint64_t age_ms, void *arg)
{
	char age[24];
	const char *cells[5] = {gateway, addr, user, target, age};

	snprintf(age, sizeof(age), "%llu", (unsigned long long)age_ms / 1000);
	(void)table_add(arg, cells);
}

static void control_upstream_rows(struct pool *p, const char *gateway, struct table *t)
{
	for (size_t i = 0; i < pool_size(p); i++) {
		const char *cells[4] = {gateway, pool_target(p), pool_addr(p, i)->text,
					pool_member_up(p, i) ? "up" : "down"};

		(void)table_add(t, cells);
	}
}

/* Runs r; the answer's body goes into t (or a message into done). Returns 0,
 * or -1 with why. */
static int control_run(struct control_conn *k, const struct ctl_request *r, struct table **t,
		       char *done, size_t done_len, char *why, size_t why_len)
{
	static const char *const session_cols[] = {SESSION_COLUMNS};
	static const char *const kv[] = {"key", "value"};
	static const char *const penalty_cols[] = {"source", "state", "#left_s", "#logging_in"};
	static const char *const upstream_cols[] = {"gateway", "target", "upstream", "state"};
	static const char *const pass_cols[] = {"gateway", "client", "user", "target", "#age_s"};
	const struct control_env *env = &k->c->env;
	struct session_filter f = {r->gateway, r->user, r->id, r->has_source ? &r->source : NULL};
	struct control_call call = {.f = &f};
	char reason[96];
	uint64_t now = loop_now_ms(env->loop);

	switch (r->cmd) {
	case CTL_STATUS:
		*t = table_new(kv, 2);
		if (*t != NULL)
			env->status(env->arg, *t);
		break;
	case CTL_SESSIONS:
		*t = table_new(session_cols, SESSION_N_COLUMNS);
		call.t = *t;
		for (unsigned i = 0; *t != NULL && i < env->n_workers; i++)
			if (worker_call(env->workers[i], control_describe, &call,
					CONTROL_WORKER_MS) < 0)
				return snprintf(why, why_len, "worker %u did not answer", i), -1;
		break;
	case CTL_KILL:
		snprintf(reason, sizeof(reason), "killed by sockgatectl, uid %u", (unsigned)k->uid);
		call.reason = reason;
		for (unsigned i = 0; i < env->n_workers; i++)
			if (worker_call(env->workers[i], control_kill_on, &call,
					CONTROL_WORKER_MS) < 0)
				return snprintf(why, why_len, "worker %u did not answer", i), -1;
		log_msg(LOG_NOTICE, "sockgatectl (uid %u) killed %u session%s", (unsigned)k->uid,
			call.killed, call.killed == 1 ? "" : "s");
		snprintf(done, done_len, "%u session%s killed\n", call.killed,
			 call.killed == 1 ? "" : "s");
		break;
	case CTL_PENALTIES:
		if (r->change) {
			struct sockaddr_storage ss = {0};

			/* A range's first address names its source. */
			ss.ss_family = (sa_family_t)r->source.family;
			if (r->source.family == AF_INET)
				memcpy(&((struct sockaddr_in *)&ss)->sin_addr, r->source.addr, 4);
			else
				memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, r->source.addr,
				       16);
			if (env->penalties == NULL ||
			    !penalty_lift(env->penalties, (struct sockaddr *)&ss, now))
				return snprintf(why, why_len, "no penalty for that source"), -1;
			log_msg(LOG_NOTICE, "sockgatectl (uid %u) lifted a penalty",
				(unsigned)k->uid);
			snprintf(done, done_len, "penalty lifted\n");
			break;
		}
		*t = table_new(penalty_cols, 4);
		if (*t != NULL && env->penalties != NULL)
			penalty_list(env->penalties, now, control_penalty_row, *t);
		break;
	case CTL_UPSTREAMS: {
		size_t n = 0;
		struct gateway **gws = env->gateways(env->arg, &n);

		*t = table_new(upstream_cols, 4);
		for (size_t i = 0; *t != NULL && i < n; i++) {
			control_upstream_rows(gws[i]->pool, gws[i]->cfg->name, *t);
			for (size_t j = 0; j < gws[i]->cfg->n_targets; j++)
				control_upstream_rows(gws[i]->target_pools[j], gws[i]->cfg->name,
						      *t);
		}
		break;
	}
	case CTL_PASSES:
		if (r->change) {
			size_t ended = passes_revoke(env->passes, r->has_source ? &r->source : NULL,
						     r->user[0] != '\0' ? r->user : NULL);

			log_msg(LOG_NOTICE, "sockgatectl (uid %u) revoked %zu pass%s",
				(unsigned)k->uid, ended, ended == 1 ? "" : "es");
			snprintf(done, done_len, "%zu pass%s revoked\n", ended,
				 ended == 1 ? "" : "es");
			break;
		}
		*t = table_new(pass_cols, 5);
		if (*t != NULL)
			passes_list(env->passes, now, control_pass_row, *t);
		break;
	case CTL_RELOAD:
		if (env->reload(env->arg, why, why_len) < 0)
			return -1;
		snprintf(done, done_len, "configuration reloaded\n");
		break;
	case CTL_DRAIN:
		env->drain(env->arg, r->timeout_s);
		snprintf(done, done_len,
			 "draining: no new connections; exiting when the last "
			 "session ends\n");
		break;
	case CTL_RESTART:
		if (env->restart(env->arg, why, why_len) < 0)
			return -1;
		log_msg(LOG_NOTICE, "sockgatectl (uid %u) asked for a restart", (unsigned)k->uid);
		snprintf(done, done_len,
			 "restarting: the relayed sessions are handed over to the next process\n");
		break;
	case CTL__COMMANDS:
		break;
	}
	if (*t == NULL && done[0] == '\0')
		return snprintf(why, why_len, "out of memory"), -1;
	return 0;
}

/* The request is in: the answer, then writing it. */
static void control_conn_io(struct loop_io *io, uint32_t events);
static void control_conn_deadline(struct loop_timer *t);

static void control_answer(struct control_conn *k)
{
	struct ctl_request r;
	struct errbuf err;
	struct table *t = NULL;
	char done[160] = "", why[ERRBUF_LEN] = "";
	int rc;

	if (ctl_parse(k->req, k->req_len, &r, &err) < 0) {
		rc = -1;
		snprintf(why, sizeof(why), "%s", err.msg);
	} else {
		rc = control_run(k, &r, &t, done, sizeof(done), why, sizeof(why));
	}
	if (rc < 0) {
		(void)(out_add(k, "ERROR ") | out_add(k, why) | out_add(k, "\n"));
	} else {
		/* "OK LENGTH": a reader cut off early can tell. */
		char *body = NULL, head[32];
		size_t len = 0;

		if (t != NULL ? table_render(t, r.json, &body, &len) < 0
			      : (body = strdup(done)) == NULL) {
			(void)out_add(k, "ERROR out of memory\n");
		} else {
			len = t != NULL ? len : strlen(body);
			snprintf(head, sizeof(head), "OK %zu\n", len);
			if (out_add(k, head) < 0 || out_add(k, body) < 0) {
				free(k->out);
				k->out = NULL;
				k->out_len = 0;
				(void)out_add(k, "ERROR the answer is too large\n");
			}
		}
		free(body);
	}
	table_free(t);
	/* Written now where it fits: a drain may stop the loop before another
	 * round would. */
	if (loop_io_mod(k->c->env.loop, &k->io, EPOLLOUT) == 0)
		control_conn_io(&k->io, EPOLLOUT);
}

static void control_conn_io(struct loop_io *io, uint32_t events)
{
	struct control_conn *k = io->arg;

	(void)events;
	if (k->draining) {
		char sink[4096];
		ssize_t n;

		while ((n = recv(k->fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
			;
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			control_conn_end(k);
		return;
	}
	if (k->out != NULL) {
		while (k->out_sent < k->out_len) {
			ssize_t n = send(k->fd, k->out + k->out_sent, k->out_len - k->out_sent,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				return;
			if (n <= 0) {
				control_conn_end(k);
				return;
			}
			k->out_sent += (size_t)n;
			/* The deadline is for a stalled peer: one that reads a
			 * long answer slowly but steadily gets all of it. */
			(void)loop_timer_arm(k->c->env.loop, &k->deadline, CONTROL_DEADLINE_MS,
					     control_conn_deadline, k);
		}
		/* Closing with unread bytes would reset the connection and could
		 * lose the answer: end our side, then read to the peer's end
		 * (bounded by the deadline). */
		(void)shutdown(k->fd, SHUT_WR);
		k->draining = true;
		if (loop_io_mod(k->c->env.loop, &k->io, EPOLLIN) < 0)
			control_conn_end(k);
		return;
	}
	for (;;) {
		ssize_t n =
			recv(k->fd, k->req + k->req_len, sizeof(k->req) - k->req_len, MSG_DONTWAIT);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			control_conn_end(k);
			return;
		}
		k->req_len += (size_t)n;
		nl = memchr(k->req, '\n', k->req_len);
		if (nl != NULL) {
			k->req_len = (size_t)(nl - k->req);
			control_answer(k);
			return;
		}
		if (k->req_len == sizeof(k->req)) {
			(void)out_add(k, "ERROR request longer than 1023 bytes\n");
			(void)loop_io_mod(k->c->env.loop, &k->io, EPOLLOUT);
			return;
		}
	}
}

static void control_conn_deadline(struct loop_timer *t)
{
	control_conn_end(t->arg);
}

/* A refused peer gets one line and the close, and takes no slot: refusals
 * cannot keep root out. They are logged at most once a second, with a count,
 * so a loop of them cannot flood the journal. */
static void control_refuse(struct control *c, int fd, const struct ucred *cred, bool have_cred)
{
	uint64_t now = loop_now_ms(c->env.loop);

	(void)!send(fd, "ERROR permission denied\n", 24, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
	if (c->refused_log_ms != 0 && now < c->refused_log_ms + 1000) {
		c->refused_unlogged++;
		return;
	}
	if (c->refused_unlogged > 0)
		log_msg(LOG_WARNING,
			"control socket: uid %u refused (not root, not in the control group); "
			"%u more refused since the last such line",
			have_cred ? (unsigned)cred->uid : 0u, c->refused_unlogged);
	else
		log_msg(LOG_WARNING,
			"control socket: uid %u refused (not root, not in the control group)",
			have_cred ? (unsigned)cred->uid : 0u);
	c->refused_log_ms = now;
	c->refused_unlogged = 0;
}

static void control_accept(struct loop_io *io, uint32_t events)
{
	struct control *c = io->arg;

	(void)events;
	for (;;) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct control_conn *k = NULL;
		struct ucred cred;
		socklen_t len = sizeof(cred);
		bool have_cred;

		if (fd < 0)
			return;
		have_cred = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
			    len == sizeof(cred);
		if (!have_cred || !control_allowed(c, fd, &cred)) {
			control_refuse(c, fd, &cred, have_cred);
			continue;
		}
		for (size_t i = 0; i < CONTROL_MAX_CONNS && k == NULL; i++)
			if (!c->conns[i].used)
				k = &c->conns[i];
		if (k == NULL) {
			(void)!send(fd, "ERROR busy\n", 11, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		memset(k, 0, sizeof(*k));
		k->c = c;
		k->fd = fd;
		k->uid = cred.uid;
		k->used = true;
		if (loop_io_add(c->env.loop, &k->io, fd, EPOLLIN, control_conn_io, k) < 0 ||
		    loop_timer_arm(c->env.loop, &k->deadline, CONTROL_DEADLINE_MS,
				   control_conn_deadline, k) < 0) {
			loop_io_del(c->env.loop, &k->io);
			close(fd);
			k->used = false;
		}
	}
}

static bool control_socket_live(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return live;
}

/* The group by name or number. Members of a large (directory) group take more
 * than a small buffer: it grows until the entry fits. */
static int control_find_group(const char *name, gid_t *gid, struct errbuf *err)
{
	struct group gr, *g = NULL;
	size_t cap = 4096;
	char *buf = NULL, *end;
	unsigned long n = strtoul(name, &end, 10);
	bool numeric = name[0] >= '0' && name[0] <= '9' && *end == '\0';
	int rc;

	for (;;) {
		char *grown = realloc(buf, cap);

		if (grown == NULL) {
			free(buf);
			return errbuf_set(err, "out of memory");
		}
		buf = grown;
		rc = numeric ? getgrgid_r((gid_t)n, &gr, buf, cap, &g)
			     : getgrnam_r(name, &gr, buf, cap, &g);
		if (rc != ERANGE || cap >= (16u << 20))
			break;
		cap *= 4;
	}
	if (g != NULL)
		*gid = g->gr_gid;
	free(buf);
	if (g == NULL && numeric) {
		/* A number names a gid even without an entry in the group database. */
		*gid = (gid_t)n;
		return 0;
	}
	if (g == NULL)
		return rc != 0 ? errbuf_errno(err, rc, "control.group \"%s\"", name)
			       : errbuf_set(err, "control.group: no group \"%s\"", name);
	return 0;
}

struct control *control_start(const struct config_control *cfg, const struct control_env *env,
			      struct errbuf *err)
{
	struct control *c = calloc(1, sizeof(*c));
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (c == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	c->env = *env;
	c->fd = -1;
	if (cfg->group != NULL && control_find_group(cfg->group, &c->gid, err) < 0) {
		free(c);
		return NULL;
	}
	c->have_group = cfg->group != NULL;
	snprintf(c->path, sizeof(c->path), "%s", cfg->socket);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", cfg->socket);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* A socket file left by a daemon that died is stale: replace it; one a
	 * running daemon answers on is not ours to take. */
	if (control_socket_live(&sun)) {
		errbuf_set(err, "control socket %s: another daemon is listening on it",
			   cfg->socket);
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return NULL;
	}
	(void)unlink(cfg->socket);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(cfg->socket, c->have_group ? 0666 : 0600) < 0 || listen(c->fd, 16) < 0 ||
	    loop_io_add(env->loop, &c->io, c->fd, EPOLLIN, control_accept, c) < 0) {
		errbuf_errno(err, errno, "control socket %s", cfg->socket);
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return NULL;
	}
	return c;
}

void control_stop(struct control *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < CONTROL_MAX_CONNS; i++)
		if (c->conns[i].used)
			control_conn_end(&c->conns[i]);
	loop_io_del(c->env.loop, &c->io);
	close(c->fd);
	(void)unlink(c->path);
	free(c);
}
