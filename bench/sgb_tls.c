/* sgb_tls: the TLS modes of sgbench, for relays that terminate TLS (sockgate
 * with a tls group, HAProxy's `bind ... ssl crt`, stunnel). A connection per
 * thread with blocking I/O through OpenSSL: the generator stays simple and its
 * cost the same for every contender.
 *   tlsbulk        --conns N: the pattern through TLS to the checking sink
 *                  upstream, confirmed at the end (MB/s)
 *   tlshandshakes  --concurrency N [--resume]: connect, full (or resumed)
 *                  handshake, close, as fast as N threads can (handshakes/s)
 *   tlsidle        --sessions N: TLS sessions opened (and logged in) and left
 *                  idle; --pid's memory per session (KiB)
 * Servers are not verified: the certificate is the benchmark's own. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sgb.h"

struct tls_conn {
	int fd;
	SSL *ssl;
};

static SSL_CTX *sgb_tls_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* Tickets are kept for --resume; nothing else is cached. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	return ctx;
}

/* A blocking TCP connection and a TLS handshake (resuming sess if not NULL).
 * Returns 0, or -1 with err set. */
static int sgb_tls_open(const struct sgb_opts *o, SSL_CTX *ctx, SSL_SESSION *sess,
			struct tls_conn *c, char *err, size_t errlen)
{
	int one = 1;

	c->ssl = NULL;
	c->fd = socket(o->target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (const struct sockaddr *)&o->target, o->target_len) < 0) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		goto fail;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		snprintf(err, errlen, "SSL_new failed");
		goto fail;
	}
	if (sess != NULL) {
		/* OpenSSL's client uses a TLS 1.3 session once (single-use
		 * tickets), so each connection offers a copy of the primed one,
		 * as `openssl s_time -reuse` offers the same ticket again. */
		SSL_SESSION *copy = SSL_SESSION_dup(sess);
		int set = copy != NULL && SSL_set_session(c->ssl, copy) == 1;

		SSL_SESSION_free(copy);
		if (!set) {
			snprintf(err, errlen, "cannot offer the session");
			goto fail;
		}
	}
	if (SSL_connect(c->ssl) != 1) {
		unsigned long e = ERR_get_error();

		snprintf(err, errlen, "handshake: %s",
			 e != 0 ? ERR_reason_error_string(e) : strerror(errno));
		ERR_clear_error();
		goto fail;
	}
	return 0;
fail:
	SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	return -1;
}

/* Closes without close_notify, as load generators and impatient clients do.
 * The quiet shutdown still marks the SSL as shut down: OpenSSL would
 * otherwise take the close for a failure and make the session (shared by
 * every thread of --resume) unresumable. */
static void sgb_tls_close(struct tls_conn *c)
{
	if (c->ssl != NULL) {
		SSL_set_quiet_shutdown(c->ssl, 1);
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	c->ssl = NULL;
	c->fd = -1;
}

/* Reads until text has arrived (the login's success message). */
static int sgb_tls_expect(struct tls_conn *c, const char *text, char *err, size_t errlen)
{
	char buf[1024];
	size_t len = 0;

	buf[0] = '\0';
	while (strstr(buf, text) == NULL) {
		int n;

		if (len + 1 >= sizeof(buf)) {
			memmove(buf, buf + len / 2, len - len / 2 + 1);
			len -= len / 2;
		}
		n = SSL_read(c->ssl, buf + len, (int)(sizeof(buf) - 1 - len));
		if (n <= 0) {
			snprintf(err, errlen, "no \"%s\" (connection ended)", text);
			ERR_clear_error();
			return -1;
		}
		len += (size_t)n;
		buf[len] = '\0';
	}
	return 0;
}

static int sgb_tls_write_all(struct tls_conn *c, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t n = 0;

		if (SSL_write_ex(c->ssl, (const char *)buf + done, len - done, &n) != 1)
			return -1;
		done += n;
	}
	return 0;
}

/* The login, if the options ask for one. */
static int sgb_tls_login(const struct sgb_opts *o, struct tls_conn *c, char *err, size_t errlen)
{
	char line[600];

	if (!o->login.enabled)
		return 0;
	snprintf(line, sizeof(line), "%s\n%s\n", o->login.user, o->login.pass);
	if (sgb_tls_write_all(c, line, strlen(line)) < 0) {
		snprintf(err, errlen, "login: write failed");
		return -1;
	}
	return sgb_tls_expect(c, o->login.success, err, errlen);
}

/* ---- tlsbulk ---------------------------------------------------------------- */

struct bulk_thread {
	const struct sgb_opts *o;
	SSL_CTX *ctx;
	unsigned id;
	pthread_t tid;
	uint64_t t0, t_measure, t_end; /* ns */
	uint64_t sent, measured;
	bool ok;
	char err[256];
};

static void *bulk_run(void *arg)
{
	struct bulk_thread *t = arg;
	const struct sgb_opts *o = t->o;
	struct tls_conn c;
	uint64_t pos = sgb_pattern_start(t->id), start = pos, at_measure = 0;
	char hdr[SGB_HDR_MAX], reply[64];
	size_t chunk = o->chunk, rlen = 0;
	bool measuring = false;

	if (sgb_tls_open(o, t->ctx, NULL, &c, t->err, sizeof(t->err)) < 0 ||
	    sgb_tls_login(o, &c, t->err, sizeof(t->err)) < 0)
		goto out;
	snprintf(hdr, sizeof(hdr), "SGB sink %" PRIu64 "\n", pos);
	if (sgb_tls_write_all(&c, hdr, strlen(hdr)) < 0) {
		snprintf(t->err, sizeof(t->err), "write failed");
		goto out;
	}
	for (;;) {
		uint64_t now = sgb_now_ns();

		if (!measuring && now >= t->t_measure) {
			measuring = true;
			at_measure = pos - start;
		}
		if (now >= t->t_end)
			break;
		if (sgb_tls_write_all(&c, sgb_pattern_at(pos), chunk) < 0) {
			snprintf(t->err, sizeof(t->err), "write failed");
			goto out;
		}
		pos += chunk;
	}
	t->sent = pos - start;
	t->measured = t->sent - at_measure;
	/* The end of our stream (close_notify; the relay passes the end on), then
	 * the sink's verdict. */
	SSL_shutdown(c.ssl);
	shutdown(c.fd, SHUT_WR);
	for (;;) {
		int n = SSL_read(c.ssl, reply + rlen, (int)(sizeof(reply) - 1 - rlen));

		if (n <= 0)
			break;
		rlen += (size_t)n;
		if (rlen + 1 >= sizeof(reply))
			break;
	}
	reply[rlen] = '\0';
	{
		char want[64];

		snprintf(want, sizeof(want), "OK %" PRIu64 "\n", t->sent);
		if (strcmp(reply, want) != 0)
			snprintf(t->err, sizeof(t->err), "the sink said \"%.40s\", not %s", reply,
				 want);
		else
			t->ok = true;
	}
out:
	ERR_clear_error();
	sgb_tls_close(&c);
	return NULL;
}

static int mode_tlsbulk(const struct sgb_opts *o)
{
	struct bulk_thread *th = calloc(o->conns, sizeof(*th));
	SSL_CTX *ctx = sgb_tls_ctx();
	uint64_t t0 = sgb_now_ns(), measured = 0;
	long long cpu0 = o->pid > 0 ? sgb_proc_cpu_ms(o->pid) : -1, cpu1;
	unsigned ok = 0;
	const char *err = "";
	struct sgb_json j;
	double secs = o->seconds;

	if (th == NULL || ctx == NULL)
		return 1;
	for (unsigned i = 0; i < o->conns; i++) {
		th[i] = (struct bulk_thread){.o = o, .ctx = ctx, .id = i};
		th[i].t_measure = t0 + (uint64_t)((o->warmup + 0.05) * 1e9);
		th[i].t_end = th[i].t_measure + (uint64_t)(secs * 1e9);
		pthread_create(&th[i].tid, NULL, bulk_run, &th[i]);
	}
	for (unsigned i = 0; i < o->conns; i++) {
		pthread_join(th[i].tid, NULL);
		if (th[i].ok) {
			ok++;
			measured += th[i].measured;
		} else if (*err == '\0') {
			err = th[i].err;
		}
	}
	cpu1 = o->pid > 0 ? sgb_proc_cpu_ms(o->pid) : -1;
	sgb_json_begin(&j, o);
	sgb_json_bool(&j, "ok", ok == o->conns);
	sgb_json_int(&j, "conns", o->conns);
	sgb_json_num(&j, "MBps", (double)measured / secs / 1e6);
	if (cpu0 >= 0 && cpu1 >= 0)
		sgb_json_num(&j, "daemon_cpu_ms_per_gb",
			     measured > 0 ? (double)(cpu1 - cpu0) / ((double)measured / 1e9) : 0);
	if (ok != o->conns)
		sgb_json_str(&j, "error", err);
	sgb_json_end(&j);
	fprintf(stderr, "%s tlsbulk %u conns: %.0f MB/s%s%s\n", o->label ? o->label : "", o->conns,
		(double)measured / secs / 1e6,
		ok == o->conns ? "" : ", error: ", ok == o->conns ? "" : err);
	SSL_CTX_free(ctx);
	free(th);
	return ok == o->conns ? 0 : 1;
}

/* ---- tlshandshakes ------------------------------------------------------------- */

struct hs_thread {
	const struct sgb_opts *o;
	SSL_CTX *ctx;
	SSL_SESSION *sess; /* resume this, or NULL */
	pthread_t tid;
	uint64_t t_measure, t_end;
	unsigned long done, resumed, errors;
	char err[256];
};

static void *hs_run(void *arg)
{
	struct hs_thread *t = arg;

	for (;;) {
		struct tls_conn c;
		uint64_t now = sgb_now_ns();
		char err[256];

		if (now >= t->t_end)
			break;
		if (sgb_tls_open(t->o, t->ctx, t->sess, &c, err, sizeof(err)) < 0) {
			if (t->errors++ == 0)
				snprintf(t->err, sizeof(t->err), "%s", err);
			if (t->errors >= 100)
				break; /* the relay is gone: no point spinning */
			continue;
		}
		if (now >= t->t_measure) {
			t->done++;
			t->resumed += SSL_session_reused(c.ssl) == 1;
		}
		sgb_tls_close(&c);
	}
	return NULL;
}

/* One connection whose session (a TLS 1.3 ticket, sent after the handshake) is
 * kept for the others: it reads what the server says within 200 ms. */
static SSL_SESSION *hs_prime(const struct sgb_opts *o, SSL_CTX *ctx, char *err, size_t errlen)
{
	struct tls_conn c;
	struct timeval tv = {0, 200000};
	SSL_SESSION *s;
	char buf[512];

	if (sgb_tls_open(o, ctx, NULL, &c, err, errlen) < 0)
		return NULL;
	setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)SSL_read(c.ssl, buf, sizeof(buf));
	ERR_clear_error();
	s = SSL_get1_session(c.ssl);
	if (s == NULL || !SSL_SESSION_is_resumable(s)) {
		snprintf(err, errlen, "the server gave no session to resume");
		SSL_SESSION_free(s);
		s = NULL;
	}
	sgb_tls_close(&c);
	return s;
}

static int mode_tlshandshakes(const struct sgb_opts *o, bool resume)
{
	unsigned n = o->concurrency > 0 ? o->concurrency : 16;
	struct hs_thread *th = calloc(n, sizeof(*th));
	SSL_CTX *ctx = sgb_tls_ctx();
	SSL_SESSION *sess = NULL;
	uint64_t t0 = sgb_now_ns();
	long long cpu0, cpu1;
	unsigned long done = 0, resumed = 0, errors = 0;
	char err[256] = "";
	struct sgb_json j;

	if (th == NULL || ctx == NULL)
		return 1;
	if (resume && (sess = hs_prime(o, ctx, err, sizeof(err))) == NULL) {
		sgb_json_begin(&j, o);
		sgb_json_bool(&j, "ok", false);
		sgb_json_str(&j, "error", err);
		sgb_json_end(&j);
		return 1;
	}
	cpu0 = o->pid > 0 ? sgb_proc_cpu_ms(o->pid) : -1;
	for (unsigned i = 0; i < n; i++) {
		th[i] = (struct hs_thread){.o = o, .ctx = ctx, .sess = sess};
		th[i].t_measure = t0 + (uint64_t)(o->warmup * 1e9);
		th[i].t_end = th[i].t_measure + (uint64_t)(o->seconds * 1e9);
		pthread_create(&th[i].tid, NULL, hs_run, &th[i]);
	}
	for (unsigned i = 0; i < n; i++) {
		pthread_join(th[i].tid, NULL);
		done += th[i].done;
		resumed += th[i].resumed;
		errors += th[i].errors;
		if (err[0] == '\0')
			snprintf(err, sizeof(err), "%s", th[i].err);
	}
	cpu1 = o->pid > 0 ? sgb_proc_cpu_ms(o->pid) : -1;
	sgb_json_begin(&j, o);
	sgb_json_bool(&j, "ok", errors == 0 && (!resume || resumed == done));
	sgb_json_bool(&j, "resume", resume);
	sgb_json_num(&j, "handshakes_per_s", (double)done / o->seconds);
	sgb_json_int(&j, "resumed", (long long)resumed);
	sgb_json_int(&j, "errors", (long long)errors);
	if (cpu0 >= 0 && cpu1 >= 0 && done > 0)
		sgb_json_num(&j, "daemon_cpu_us_per_handshake",
			     (double)(cpu1 - cpu0) * 1000.0 / (double)done);
	if (errors > 0)
		sgb_json_str(&j, "error", err);
	sgb_json_end(&j);
	fprintf(stderr, "%s tlshandshakes%s: %.0f/s (%lu resumed, %lu errors)\n",
		o->label ? o->label : "", resume ? " --resume" : "", (double)done / o->seconds,
		resumed, errors);
	SSL_SESSION_free(sess);
	SSL_CTX_free(ctx);
	free(th);
	return errors == 0 && (!resume || resumed == done) ? 0 : 1;
}

/* ---- tlsidle --------------------------------------------------------------------- */

static int mode_tlsidle(const struct sgb_opts *o)
{
	struct tls_conn *c = calloc(o->sessions, sizeof(*c));
	SSL_CTX *ctx = sgb_tls_ctx();
	struct sgb_mem before, during;
	struct timespec settle = {(time_t)o->settle,
				  (long)((o->settle - (double)(time_t)o->settle) * 1e9)};
	unsigned opened = 0;
	char err[256] = "";
	struct sgb_json j;
	bool ok;

	if (c == NULL || ctx == NULL || o->pid <= 0)
		return 1;
	nanosleep(&settle, NULL);
	if (sgb_proc_mem(o->pid, &before) < 0)
		return 1;
	for (; opened < o->sessions; opened++) {
		if (sgb_tls_open(o, ctx, NULL, &c[opened], err, sizeof(err)) < 0 ||
		    sgb_tls_login(o, &c[opened], err, sizeof(err)) < 0)
			break;
	}
	nanosleep(&settle, NULL);
	ok = opened == o->sessions && sgb_proc_mem(o->pid, &during) == 0;
	sgb_json_begin(&j, o);
	sgb_json_bool(&j, "ok", ok);
	sgb_json_int(&j, "sessions", opened);
	if (ok) {
		sgb_json_num(&j, "rss_kib_per_session",
			     (double)(during.rss_kib - before.rss_kib) / opened);
		sgb_json_num(&j, "pss_kib_per_session",
			     (double)(during.pss_kib - before.pss_kib) / opened);
		sgb_json_num(&j, "anon_kib_per_session",
			     (double)(during.anon_kib - before.anon_kib) / opened);
		sgb_json_int(&j, "procs_during", during.nprocs);
	} else {
		sgb_json_str(&j, "error", err[0] != '\0' ? err : "cannot sample the memory");
	}
	sgb_json_end(&j);
	if (ok)
		fprintf(stderr, "%s tlsidle %u: %.2f KiB RSS per session\n",
			o->label ? o->label : "", opened,
			(double)(during.rss_kib - before.rss_kib) / opened);
	for (unsigned i = 0; i < opened; i++)
		sgb_tls_close(&c[i]);
	SSL_CTX_free(ctx);
	free(c);
	return ok ? 0 : 1;
}

int sgb_mode_tls(const struct sgb_opts *o)
{
	if (strcmp(o->mode, "tlsbulk") == 0)
		return mode_tlsbulk(o);
	if (strcmp(o->mode, "tlshandshakes") == 0)
		return mode_tlshandshakes(o, o->resume);
	return mode_tlsidle(o);
}
