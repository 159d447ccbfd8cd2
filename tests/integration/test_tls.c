/* test_tls: a TLS gateway against real clients: openssl s_client, socat, gnutls-cli,
 * Python's ssl module and sockgate-client log in and relay byte-exact; a client that
 * trusts another CA fails; TLS 1.1 is refused; a required client certificate is
 * enforced and its subject logged; a reload puts a renewed certificate in force for
 * new clients while a session goes on, and a bad new pair is refused; plain text on
 * the TLS port is refused cleanly; resumption works; the half-close crosses TLS both
 * ways; nothing of the login or the session is readable on the wire; a forged
 * record ends its session with the reason; TLS to the upstream (openssl
 * s_server) with its certificate verified. The
 * certificates are made by the openssl command for each run: a CA, a server
 * certificate it signed, a renewed one, another CA, a client CA and a client. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"
#include "tls.h"
#include "transport.h"

#define PASSWORD "Tls-Secret-4"
#define T        FIXTURE_TIMEOUT_MS
#define OPENSSL  "/usr/bin/openssl"

static const char *const users[] = {"alice", PASSWORD, NULL};
static char pki[64]; /* the directory of the certificates, shared by the tests */

/* ---- certificates ---------------------------------------------------------- */

/* Runs argv (a system program) to its end; fails the test unless it exits 0. */
static void run_ok(const char *const argv[])
{
	struct harness_proc p;
	char err[4096];
	ssize_t n;

	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL),
			 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	if (p.exit_code != 0) {
		n = read(p.err_fd, err, sizeof(err) - 1);
		err[n > 0 ? n : 0] = '\0';
		harness_cleanup(&p);
		fail_msg("%s %s failed: %s", argv[0], argv[1], err);
	}
	harness_cleanup(&p);
}

static void pki_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", pki, name);
}

/* A P-256 key and a certificate for subject, signed by ca (NULL: self-signed, a CA). */
static void make_cert(const char *name, const char *subject, const char *ca, const char *san)
{
	char key[128], crt[128], csr[128], cakey[128], cacrt[128], ext[128], extline[160];
	FILE *f;

	snprintf(key, sizeof(key), "%s/%s.key", pki, name);
	snprintf(crt, sizeof(crt), "%s/%s.pem", pki, name);
	snprintf(csr, sizeof(csr), "%s/%s.csr", pki, name);
	snprintf(ext, sizeof(ext), "%s/%s.ext", pki, name);
	if (ca == NULL) {
		const char *argv[] = {OPENSSL,
				      "req",
				      "-x509",
				      "-newkey",
				      "ec",
				      "-pkeyopt",
				      "ec_paramgen_curve:P-256",
				      "-nodes",
				      "-keyout",
				      key,
				      "-out",
				      crt,
				      "-days",
				      "2",
				      "-subj",
				      subject,
				      NULL};

		run_ok(argv);
		return;
	}
	snprintf(cakey, sizeof(cakey), "%s/%s.key", pki, ca);
	snprintf(cacrt, sizeof(cacrt), "%s/%s.pem", pki, ca);
	snprintf(extline, sizeof(extline), "subjectAltName=%s\n", san);
	f = fopen(ext, "w");
	assert_non_null(f);
	fputs(san != NULL ? extline : "basicConstraints=CA:FALSE\n", f);
	fclose(f);
	{
		const char *req[] = {OPENSSL,  "req",      "-newkey",
				     "ec",     "-pkeyopt", "ec_paramgen_curve:P-256",
				     "-nodes", "-keyout",  key,
				     "-out",   csr,        "-subj",
				     subject,  NULL};
		const char *sign[] = {OPENSSL, "x509", "-req",   "-in", csr,
				      "-CA",   cacrt,  "-CAkey", cakey, "-CAcreateserial",
				      "-out",  crt,    "-days",  "2",   "-extfile",
				      ext,     NULL};

		run_ok(req);
		run_ok(sign);
	}
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(pki, sizeof(pki), "/tmp/sockgate-pki.XXXXXX");
	assert_non_null(mkdtemp(pki));
	make_cert("ca", "/CN=sockgate test CA", NULL, NULL);
	make_cert("server", "/CN=localhost", "ca", "DNS:localhost,IP:127.0.0.1");
	make_cert("renewed", "/CN=localhost/O=renewed", "ca", "DNS:localhost,IP:127.0.0.1");
	make_cert("other-ca", "/CN=another CA", NULL, NULL);
	make_cert("client-ca", "/CN=sockgate client CA", NULL, NULL);
	make_cert("client", "/CN=client-alice", "client-ca", NULL);
	return 0;
}

static int group_teardown(void **state)
{
	const char *argv[] = {"/bin/rm", "-rf", pki, NULL};

	(void)state;
	run_ok(argv);
	return 0;
}

/* ---- the gateway ------------------------------------------------------------ */

/* A TLS gateway in front of an echo upstream; extra goes into the tls group. */
static void start_tls_top(struct fixture *f, const char *top, const char *tls_extra,
			  const char *gw_extra)
{
	static const char *const echo[] = {"--echo", NULL};
	char text[2048], crt[128], key[128];

	pki_path(crt, sizeof(crt), "server.pem");
	pki_path(key, sizeof(key), "server.key");
	assert_int_equal(fixture_init(f, users), 0);
	assert_int_equal(fixture_upstream(f, echo), 0);
	snprintf(text, sizeof(text),
		 "tls = { certificate = \"%s\"; key = \"%s\"; %s };\n"
		 "login = { failure_delay = 0; };\n%s",
		 crt, key, tls_extra, gw_extra);
	assert_int_equal(fixture_config(f, top, text), 0);
	assert_int_equal(fixture_start(f), 0);
}

static void start_tls(struct fixture *f, const char *tls_extra, const char *gw_extra)
{
	start_tls_top(f, NULL, tls_extra, gw_extra);
}

static int setup_plain(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	start_tls(f, "", "");
	return 0;
}

static int teardown(void **state)
{
	return fixture_test_teardown(state, PASSWORD);
}

static void port_text(const struct fixture *f, char *buf, size_t len)
{
	snprintf(buf, len, "127.0.0.1:%d", f->port);
}

/* A client program with pipes; the test types into in_fd and reads out_fd. */
static void spawn_client(struct harness_proc *p, const char *const argv[])
{
	assert_int_equal(harness_spawn(p, argv, NULL, 0), 0);
}

/* ---- real clients ------------------------------------------------------------ */

static void openssl_s_client_logs_in(void **state)
{
	struct fixture *f = *state;
	char target[64], ca[128], buf[4096];
	struct harness_proc p;
	const char *argv[] = {
		OPENSSL,   "s_client", "-quiet",      "-connect",  target,
		"-CAfile", ca,         "-servername", "localhost", "-verify_return_error",
		NULL};

	port_text(f, target, sizeof(target));
	pki_path(ca, sizeof(ca), "ca.pem");
	spawn_client(&p, argv);
	send_str(p.in_fd, "alice\n" PASSWORD "\nthrough s_client\n");
	assert_true(fixture_expect(p.out_fd, "You are now logged in.\nthrough s_client\n", buf,
				   sizeof(buf), T) > 0);
	harness_cleanup(&p);
	assert_int_equal(fixture_log_wait(f, "login ok", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "tls=\"TLSv1.3 "));
}

static void gnutls_cli_logs_in(void **state)
{
	struct fixture *f = *state;
	char port[16], ca[128], buf[4096];
	struct harness_proc p;
	const char *argv[] = {
		"/usr/bin/gnutls-cli", "--x509cafile", ca, "-p", port, "localhost", NULL};

	if (access(argv[0], X_OK) != 0)
		test_skip("no %s", argv[0]);
	snprintf(port, sizeof(port), "%d", f->port);
	pki_path(ca, sizeof(ca), "ca.pem");
	spawn_client(&p, argv);
	send_str(p.in_fd, "alice\n" PASSWORD "\nthrough gnutls\n");
	assert_true(fixture_expect(p.out_fd, "You are now logged in.\nthrough gnutls\n", buf,
				   sizeof(buf), T) > 0);
	harness_cleanup(&p);
}

/* socat sends 1 MiB of every byte value after the login, half-closes (its stdin
 * ends), and gets all of it back from the echo upstream, then the end. */
static void socat_relays_a_mebibyte_byte_exact(void **state)
{
	enum { N = 1 << 20 };
	struct fixture *f = *state;
	char addr[256], ca[128];
	struct harness_proc p;
	const char *argv[] = {"/usr/bin/socat", "-t", "10", "-", addr, NULL};
	static const char login[] = "alice\n" PASSWORD "\n";
	static const char banner[] = "Username: Password: Username and password are correct.\n"
				     "You are now logged in.\n";
	unsigned char *out = malloc(N), *in = malloc(N + sizeof(banner));
	ssize_t got;

	assert_true(out != NULL && in != NULL);
	for (size_t i = 0; i < N; i++)
		out[i] = (unsigned char)(i * 31 + (i >> 8));
	pki_path(ca, sizeof(ca), "ca.pem");
	snprintf(addr, sizeof(addr), "OPENSSL:127.0.0.1:%d,cafile=%s,commonname=localhost", f->port,
		 ca);
	spawn_client(&p, argv);
	assert_int_equal(harness_write_all(p.in_fd, login, strlen(login), T), 0);
	assert_int_equal(harness_write_all(p.in_fd, out, N, T), 0);
	close(p.in_fd);
	p.in_fd = -1;
	got = harness_read_all(p.out_fd, in, N + sizeof(banner), T);
	assert_int_equal(got, (ssize_t)(N + strlen(banner)));
	assert_memory_equal(in, banner, strlen(banner));
	assert_memory_equal(in + strlen(banner), out, N);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_equal(p.exit_code, 0);
	harness_cleanup(&p);
	free(out);
	free(in);
}

static void python_ssl_relays_binary(void **state)
{
	struct fixture *f = *state;
	char port[16], ca[128], out[256];
	struct harness_proc p;
	static const char script[] =
		"import socket, ssl, sys\n"
		"ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
		"s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))),"
		" server_hostname='localhost')\n"
		"data = bytes(range(256)) * 64\n"
		"s.sendall(b'alice\\n" PASSWORD "\\n' + data)\n"
		"got = b''\n"
		"while len(got.split(b'logged in.\\n', 1)[-1]) < len(data) or b'logged in.' not in "
		"got:\n"
		"    d = s.recv(65536)\n"
		"    if not d: break\n"
		"    got += d\n"
		"print('exact' if got.split(b'logged in.\\n', 1)[1] == data else 'differs')\n";
	const char *argv[] = {"/usr/bin/python3", "-c", script, port, ca, NULL};

	snprintf(port, sizeof(port), "%d", f->port);
	pki_path(ca, sizeof(ca), "ca.pem");
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	assert_true(fixture_expect(p.out_fd, "exact\n", out, sizeof(out), T) > 0);
	harness_cleanup(&p);
}

/* sockgate-client --tls verifies the server by default; --insecure must be asked
 * for by name; a CA it does not trust is a clear error. */
static void sockgate_client_verifies(void **state)
{
	struct fixture *f = *state;
	char port[16], ca[128], other[128], buf[4096];
	struct harness_proc p;
	const char *good[] = {"sockgate-client", "--tls",     "--ca", ca,  "--servername",
			      "localhost",       "127.0.0.1", port,   NULL};
	const char *bad[] = {"sockgate-client", "--tls", "--ca", other, "127.0.0.1", port, NULL};

	snprintf(port, sizeof(port), "%d", f->port);
	pki_path(ca, sizeof(ca), "ca.pem");
	pki_path(other, sizeof(other), "other-ca.pem");
	spawn_client(&p, good);
	send_str(p.in_fd, "alice\n" PASSWORD "\nclient says\n");
	assert_true(fixture_expect(p.out_fd, "client says\n", buf, sizeof(buf), T) > 0);
	harness_cleanup(&p);

	assert_int_equal(harness_spawn(&p, bad, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_equal(p.exit_code, 1);
	assert_true(harness_read_all(p.err_fd, buf, sizeof(buf) - 1, T) > 0);
	assert_non_null(strstr(buf, "certificate verify failed"));
	harness_cleanup(&p);
}

/* A client that trusts another CA gives up; the gateway logs why, and counts it. */
static void a_client_with_another_ca_fails(void **state)
{
	struct fixture *f = *state;
	char target[64], ca[128], line[1024];
	struct harness_proc p;
	const char *argv[] = {
		OPENSSL, "s_client", "-connect", target, "-CAfile", ca, "-verify_return_error",
		NULL};

	port_text(f, target, sizeof(target));
	pki_path(ca, sizeof(ca), "other-ca.pem");
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_not_equal(p.exit_code, 0);
	harness_cleanup(&p);
	assert_int_equal(fixture_log_wait(f, "TLS handshake failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "unknown ca"));
}

static void tls_1_1_is_refused(void **state)
{
	struct fixture *f = *state;
	char target[64], line[1024];
	struct harness_proc p;
	const char *argv[] = {OPENSSL,   "s_client", "-connect",           target,
			      "-tls1_1", "-cipher",  "DEFAULT@SECLEVEL=0", NULL};

	port_text(f, target, sizeof(target));
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_not_equal(p.exit_code, 0);
	harness_cleanup(&p);
	assert_int_equal(fixture_log_wait(f, "TLS handshake failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "unsupported protocol"));
}

/* A TLS 1.2 client that offers only what the default list leaves out (RSA key
 * exchange, CBC): no shared cipher, said so in the log. */
static void no_shared_cipher_is_refused(void **state)
{
	struct fixture *f = *state;
	char target[64], line[1024];
	struct harness_proc p;
	const char *argv[] = {OPENSSL,   "s_client", "-connect",   target,
			      "-tls1_2", "-cipher",  "AES128-SHA", NULL};

	port_text(f, target, sizeof(target));
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_not_equal(p.exit_code, 0);
	harness_cleanup(&p);
	assert_int_equal(fixture_log_wait(f, "TLS handshake failed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "no shared cipher"));
}

/* Plain text on the TLS port: no prompt, no reset, a reason in the log. */
static void plain_text_is_refused_cleanly(void **state)
{
	struct fixture *f = *state;
	char line[1024], buf[256];
	int fd = harness_connect("127.0.0.1", f->port);
	ssize_t n;

	assert_true(fd >= 0);
	send_str(fd, "alice\n" PASSWORD "\n");
	n = harness_read_all(fd, buf, sizeof(buf), T);
	assert_int_equal(n, 0); /* EOF: not a reset (-1), and no prompt */
	close(fd);
	assert_int_equal(fixture_log_wait(f, "session closed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "plain text sent to a TLS port"));
}

/* One s_client connection; with save, its session goes to sess, else it
 * offers the one in sess. Returns true if the server resumed it. */
static bool s_client_session(struct fixture *f, const char *sess, bool save)
{
	char target[64], ca[128], out[16384];
	struct harness_proc p;
	const char *argv[] = {OPENSSL,
			      "s_client",
			      "-connect",
			      target,
			      "-CAfile",
			      ca,
			      save ? "-sess_out" : "-sess_in",
			      sess,
			      NULL};
	bool reused;

	port_text(f, target, sizeof(target));
	pki_path(ca, sizeof(ca), "ca.pem");
	spawn_client(&p, argv);
	assert_true(fixture_expect(p.out_fd, "Username: ", out, sizeof(out), T) > 0);
	reused = strstr(out, "Reused, TLSv1.3") != NULL;
	harness_cleanup(&p);
	return reused;
}

/* A second connection resumes the first one's session from its ticket, and
 * still does after a reload: the ticket keys outlive it. */
static void sessions_resume(void **state)
{
	struct fixture *f = *state;
	char sess[PATH_MAX + 16], line[4096];

	snprintf(sess, sizeof(sess), "%s/session.pem", f->dir);
	assert_false(s_client_session(f, sess, true));
	assert_true(s_client_session(f, sess, false));
	assert_int_equal(fixture_reload(f), 0);
	assert_int_equal(fixture_log_wait(f, "configuration reloaded", line, sizeof(line)), 0);
	assert_true(s_client_session(f, sess, false));
}

static int setup_fast_rotation(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	/* The probes leave at the prompt: no penalty for that here. */
	start_tls_top(f, "penalties = { enabled = false; };", "ticket_rotation = 1;", "");
	return 0;
}

/* The ticket keys rotate every second and a key is forgotten after three
 * rotations: a ticket resumes at first, then stops (the wait is bounded). */
static void ticket_keys_rotate(void **state)
{
	struct fixture *f = *state;
	char sess[PATH_MAX + 16];
	long long deadline = harness_now_ms() + 15000;
	bool reused;

	snprintf(sess, sizeof(sess), "%s/session.pem", f->dir);
	assert_false(s_client_session(f, sess, true));
	assert_true(s_client_session(f, sess, false));
	do {
		reused = s_client_session(f, sess, false);
	} while (reused && harness_now_ms() < deadline);
	assert_false(reused);
}

static void send_all_tls(struct transport *t, const char *text, long long deadline)
{
	size_t off = 0, len = strlen(text);

	while (off < len) {
		ssize_t k = transport_send(t, text + off, len - off);

		if (k > 0) {
			off += (size_t)k;
			continue;
		}
		assert_int_equal(errno, EAGAIN);
		assert_true(harness_now_ms() < deadline);
		poll(&(struct pollfd){t->fd, POLLOUT, 0}, 1, 100);
	}
}

/* The client ends its sending side with close_notify: the upstream sees the end,
 * and everything it sends afterwards still reaches the client, then the end
 * (the upstream's FIN becomes close_notify). */
/* A TLS connection to the gateway through the core's own transport (so a test
 * can reach under it), the handshake done, the login sent. Returns the
 * socket; the caller closes t and unrefs *ctx. */
static int tls_connect_and_log_in(struct fixture *f, struct transport *t, struct tls_context **ctx,
				  long long deadline)
{
	struct tls_client_settings set = {.verify = false};
	struct errbuf err;
	int fd = harness_connect("127.0.0.1", f->port), flags;
	enum tls_progress pr;

	*ctx = tls_client_context(&set, &(struct errbuf){""});
	assert_non_null(*ctx);
	assert_true(fd >= 0);
	flags = fcntl(fd, F_GETFL);
	assert_int_equal(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
	assert_int_equal(transport_tls_client(t, fd, *ctx, NULL, &err), 0);
	while ((pr = tls_handshake(t, &err)) != TLS_DONE) {
		assert_int_not_equal(pr, TLS_FAILED);
		assert_true(harness_now_ms() < deadline);
		poll(&(struct pollfd){fd, pr == TLS_WANT_READ ? POLLIN : POLLOUT, 0}, 1, 100);
	}
	send_all_tls(t, "alice\n" PASSWORD "\n", deadline);
	return fd;
}

static void half_close_crosses_tls(void **state)
{
	struct fixture *f = *state;
	struct tls_context *ctx;
	struct transport t;
	char got[65536];
	size_t n = 0;
	long long deadline = harness_now_ms() + T;
	int fd = tls_connect_and_log_in(f, &t, &ctx, deadline);
	bool shut = false;

	for (;;) {
		ssize_t k = transport_recv(&t, got + n, sizeof(got) - 1 - n);

		if (k > 0) {
			n += (size_t)k;
			got[n] = '\0';
			/* Logged in: the last words, and at once the close_notify. */
			if (!shut && strstr(got, "logged in.\n") != NULL) {
				send_all_tls(&t, "last words\n", deadline);
				assert_int_equal(transport_shutdown(&t), 0);
				shut = true;
			}
			continue;
		}
		if (k == 0)
			break;
		assert_int_equal(errno, EAGAIN);
		assert_true(harness_now_ms() < deadline);
		poll(&(struct pollfd){fd, POLLIN, 0}, 1, 100);
	}
	assert_true(shut);
	/* The gateway passed the half-close on, the upstream (sockgate-server
	 * --echo) still answered the last words, then closed: the answer came
	 * after the client's close_notify, and then the end. */
	assert_non_null(strstr(got, "You are now logged in.\nlast words\n"));
	transport_close(&t);
	tls_context_unref(ctx);
}

/* ---- the wire ------------------------------------------------------------------- */

/* A tap between one client and the gateway: it relays both ways and keeps
 * every byte that crossed, as an eavesdropper on the network would. */
struct wire_tap {
	int listen_fd, port, gateway_port;
	pthread_t thread;
	char seen[2][1 << 16]; /* [0] client to gateway, [1] back */
	size_t len[2];
};

static void *wire_tap_run(void *arg)
{
	struct wire_tap *w = arg;
	int side[2], open_dirs = 2;
	long long deadline = harness_now_ms() + T;
	bool done[2] = {false, false};

	side[0] = accept(w->listen_fd, NULL, NULL);
	side[1] = harness_connect("127.0.0.1", w->gateway_port);
	if (side[0] < 0 || side[1] < 0)
		return NULL;
	while (open_dirs > 0 && harness_now_ms() < deadline) {
		struct pollfd pfd[2] = {{side[0], done[0] ? 0 : POLLIN, 0},
					{side[1], done[1] ? 0 : POLLIN, 0}};

		if (poll(pfd, 2, 100) <= 0)
			continue;
		for (int d = 0; d < 2; d++) {
			char buf[4096];
			ssize_t n;

			if (done[d] || pfd[d].revents == 0)
				continue;
			n = read(side[d], buf, sizeof(buf));
			if (n <= 0) {
				done[d] = true;
				open_dirs--;
				shutdown(side[1 - d], SHUT_WR);
				continue;
			}
			if (w->len[d] + (size_t)n <= sizeof(w->seen[d])) {
				memcpy(w->seen[d] + w->len[d], buf, (size_t)n);
				w->len[d] += (size_t)n;
			}
			if (write(side[1 - d], buf, (size_t)n) != n)
				done[d] = true;
		}
	}
	close(side[0]);
	close(side[1]);
	return NULL;
}

static void wire_tap_start(struct wire_tap *w, int gateway_port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);

	memset(w, 0, sizeof(*w));
	w->gateway_port = gateway_port;
	w->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(w->listen_fd >= 0);
	assert_int_equal(bind(w->listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(w->listen_fd, 1), 0);
	assert_int_equal(getsockname(w->listen_fd, (struct sockaddr *)&sin, &len), 0);
	w->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&w->thread, NULL, wire_tap_run, w), 0);
}

static bool wire_shows(const struct wire_tap *w, const char *text)
{
	return memmem(w->seen[0], w->len[0], text, strlen(text)) != NULL ||
	       memmem(w->seen[1], w->len[1], text, strlen(text)) != NULL;
}

/* The login and a session through TLS, watched on the wire: none of the user
 * name, the password, the prompts or the relayed bytes can be read there. */
static void nothing_is_readable_on_the_wire(void **state)
{
	struct fixture *f = *state;
	static struct wire_tap w;
	char target[64], ca[128], buf[4096];
	struct harness_proc p;
	const char *argv[] = {OPENSSL,   "s_client", "-quiet",      "-connect",  target,
			      "-CAfile", ca,         "-servername", "localhost", NULL};
	static const char *const secrets[] = {
		"alice", PASSWORD, "Username", "Password", "logged in", "private-marker-7",
	};

	wire_tap_start(&w, f->port);
	snprintf(target, sizeof(target), "127.0.0.1:%d", w.port);
	pki_path(ca, sizeof(ca), "ca.pem");
	spawn_client(&p, argv);
	send_str(p.in_fd, "alice\n" PASSWORD "\nprivate-marker-7\n");
	assert_true(fixture_expect(p.out_fd, "private-marker-7\n", buf, sizeof(buf), T) > 0);
	harness_cleanup(&p);
	assert_int_equal(pthread_join(w.thread, NULL), 0);
	close(w.listen_fd);
	/* Not vacuous: the tap carried the handshake and the session. */
	assert_true(w.len[0] > 300 && w.len[1] > 300);
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		if (wire_shows(&w, secrets[i]))
			fail_msg("\"%s\" crossed the wire in clear", secrets[i]);
	}
}

/* After the login, a record that is no record of this session (a forged MAC):
 * the session ends with OpenSSL's reason, and the gateway goes on serving. */
static void a_corrupt_record_ends_the_session_with_its_reason(void **state)
{
	struct fixture *f = *state;
	struct tls_context *ctx;
	struct transport t;
	char got[4096] = "", line[4096], sess[PATH_MAX + 16];
	size_t n = 0;
	long long deadline = harness_now_ms() + T;
	int fd = tls_connect_and_log_in(f, &t, &ctx, deadline);
	/* application_data, TLS 1.2 on the wire, 32 bytes of nonsense. */
	static const char forged[] = "\x17\x03\x03\x00\x20"
				     "0123456789abcdef0123456789abcdef";

	while (strstr(got, "logged in.\n") == NULL) {
		ssize_t k = transport_recv(&t, got + n, sizeof(got) - 1 - n);

		if (k > 0) {
			n += (size_t)k;
			got[n] = '\0';
			continue;
		}
		assert_true(k < 0 && errno == EAGAIN);
		assert_true(harness_now_ms() < deadline);
		poll(&(struct pollfd){fd, POLLIN, 0}, 1, 100);
	}
	assert_int_equal(write(fd, forged, sizeof(forged) - 1), (ssize_t)sizeof(forged) - 1);
	assert_int_equal(fixture_log_wait(f, "session closed", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "reason=\"client TLS error: "));
	assert_non_null(strstr(line, "bad record mac"));
	transport_close(&t);
	tls_context_unref(ctx);
	/* The next client is served as ever (it gets its prompt). */
	snprintf(sess, sizeof(sess), "%s/session.pem", f->dir);
	(void)s_client_session(f, sess, true);
}

/* ---- client certificates --------------------------------------------------- */

static int setup_required(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char ca[128], extra[256];

	assert_non_null(f);
	*state = f;
	pki_path(ca, sizeof(ca), "client-ca.pem");
	snprintf(extra, sizeof(extra), "client_ca = \"%s\"; verify_client = \"required\";", ca);
	start_tls(f, extra, "");
	return 0;
}

static void a_required_client_certificate_is_enforced(void **state)
{
	struct fixture *f = *state;
	char target[64], ca[128], crt[128], key[128], buf[16384];
	struct harness_proc p;
	const char *none[] = {OPENSSL, "s_client", "-quiet", "-connect",
			      target,  "-CAfile",  ca,       NULL};
	const char *with[] = {OPENSSL, "s_client", "-quiet", "-connect", target, "-CAfile",
			      ca,      "-cert",    crt,      "-key",     key,    NULL};

	port_text(f, target, sizeof(target));
	pki_path(ca, sizeof(ca), "ca.pem");
	pki_path(crt, sizeof(crt), "client.pem");
	pki_path(key, sizeof(key), "client.key");
	/* Without: no prompt, ever. */
	assert_int_equal(harness_spawn(&p, none, NULL, 0), 0);
	assert_true(harness_read_all(p.out_fd, buf, sizeof(buf) - 1, T) >= 0);
	assert_null(strstr(buf, "Username:"));
	harness_cleanup(&p);
	assert_int_equal(fixture_log_wait(f, "TLS handshake failed", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "certificate"));
	/* With: the login, and the subject in the log. */
	spawn_client(&p, with);
	send_str(p.in_fd, "alice\n" PASSWORD "\nwith a certificate\n");
	assert_true(fixture_expect(p.out_fd, "with a certificate\n", buf, sizeof(buf), T) > 0);
	harness_cleanup(&p);
	assert_int_equal(fixture_log_wait(f, "login ok", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "tls_subject=\"/CN=client-alice\""));
}

/* ---- reload ------------------------------------------------------------------ */

static void copy_file(const char *from, const char *to)
{
	const char *argv[] = {"/bin/cp", from, to, NULL};

	run_ok(argv);
}

/* The gateway reads its certificate from the fixture's directory, so the test can
 * renew it there. */
static int setup_renewable(void **state)
{
	static const char *const echo[] = {"--echo", NULL};
	struct fixture *f = calloc(1, sizeof(*f));
	char from[128], crt[PATH_MAX + 16], key[PATH_MAX + 16], text[PATH_MAX * 2 + 128];

	assert_non_null(f);
	*state = f;
	assert_int_equal(fixture_init(f, users), 0);
	assert_int_equal(fixture_upstream(f, echo), 0);
	snprintf(crt, sizeof(crt), "%s/cert.pem", f->dir);
	snprintf(key, sizeof(key), "%s/key.pem", f->dir);
	pki_path(from, sizeof(from), "server.pem");
	copy_file(from, crt);
	pki_path(from, sizeof(from), "server.key");
	copy_file(from, key);
	snprintf(text, sizeof(text), "tls = { certificate = \"%s\"; key = \"%s\"; };", crt, key);
	assert_int_equal(fixture_config(f, NULL, text), 0);
	assert_int_equal(fixture_start(f), 0);
	return 0;
}

/* What certificate subject a new client is shown. */
static void subject_seen(const struct fixture *f, char *out, size_t len)
{
	char target[64], ca[128];
	struct harness_proc p;
	const char *argv[] = {OPENSSL, "s_client", "-connect", target, "-CAfile", ca, NULL};

	port_text(f, target, sizeof(target));
	pki_path(ca, sizeof(ca), "ca.pem");
	assert_int_equal(harness_spawn(&p, argv, NULL, 0), 0);
	assert_true(fixture_expect(p.out_fd, "Username: ", out, len, T) > 0);
	harness_cleanup(&p);
}

static void a_reload_renews_the_certificate(void **state)
{
	struct fixture *f = *state;
	char from[128], crt[PATH_MAX + 16], key[PATH_MAX + 16], seen[16384], buf[4096];
	struct harness_proc live;
	char target[64], ca[128];
	const char *argv[] = {OPENSSL, "s_client", "-quiet", "-connect",
			      target,  "-CAfile",  ca,       NULL};
	FILE *bad;

	port_text(f, target, sizeof(target));
	pki_path(ca, sizeof(ca), "ca.pem");
	subject_seen(f, seen, sizeof(seen));
	assert_null(strstr(seen, "O = renewed"));
	/* A session that lives through the renewal. */
	spawn_client(&live, argv);
	send_str(live.in_fd, "alice\n" PASSWORD "\nbefore\n");
	assert_true(fixture_expect(live.out_fd, "before\n", buf, sizeof(buf), T) > 0);

	snprintf(crt, sizeof(crt), "%s/cert.pem", f->dir);
	snprintf(key, sizeof(key), "%s/key.pem", f->dir);
	pki_path(from, sizeof(from), "renewed.pem");
	copy_file(from, crt);
	pki_path(from, sizeof(from), "renewed.key");
	copy_file(from, key);
	assert_int_equal(fixture_reload(f), 0);
	subject_seen(f, seen, sizeof(seen));
	assert_non_null(strstr(seen, "O = renewed"));
	send_str(live.in_fd, "after\n");
	assert_true(fixture_expect(live.out_fd, "after\n", buf, sizeof(buf), T) > 0);

	/* A key that does not match: the reload fails, the renewed pair stays. */
	pki_path(from, sizeof(from), "server.key");
	copy_file(from, key);
	assert_int_equal(fixture_reload(f), 0);
	assert_int_equal(fixture_log_wait(f, "reload failed", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "does not match"));
	subject_seen(f, seen, sizeof(seen));
	assert_non_null(strstr(seen, "O = renewed"));
	/* Garbage in place of the certificate: the same. */
	bad = fopen(crt, "w");
	assert_non_null(bad);
	fputs("not a certificate\n", bad);
	fclose(bad);
	assert_int_equal(fixture_reload(f), 0);
	assert_int_equal(fixture_log_wait(f, "reload failed", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "no PEM certificate"));
	send_str(live.in_fd, "still\n");
	assert_true(fixture_expect(live.out_fd, "still\n", buf, sizeof(buf), T) > 0);
	harness_cleanup(&live);
}

/* ---- TLS to the upstream ------------------------------------------------------ */

struct upstream_tls {
	struct fixture f;
	struct harness_proc server;
};

/* openssl s_server -rev answers each line reversed, over TLS. */
static int start_upstream_tls(void **state, const char *ca_name)
{
	struct upstream_tls *u = calloc(1, sizeof(*u));
	char crt[128], key[128], ca[128], port[16], text[1024];
	int lfd, p;
	const char *argv[] = {OPENSSL, "s_server", "-accept", port,   "-cert",
			      crt,     "-key",     key,       "-rev", NULL};

	assert_non_null(u);
	*state = u;
	lfd = harness_listen("127.0.0.1", &p);
	close(lfd); /* a free port for s_server */
	snprintf(port, sizeof(port), "127.0.0.1:%d", p);
	pki_path(crt, sizeof(crt), "server.pem");
	pki_path(key, sizeof(key), "server.key");
	pki_path(ca, sizeof(ca), ca_name);
	assert_int_equal(harness_spawn(&u->server, argv, NULL, 0), 0);
	assert_int_equal(fixture_init(&u->f, users), 0);
	u->f.upstream_port = p;
	snprintf(text, sizeof(text),
		 "upstream_tls = { ca = \"%s\"; server_name = \"localhost\"; };\n"
		 "timeouts = { connect = 5; };",
		 ca);
	assert_int_equal(fixture_config(&u->f, NULL, text), 0);
	assert_int_equal(fixture_start(&u->f), 0);
	/* It says ACCEPT once it listens (a probe connection would use up its
	 * patience for clients). */
	assert_int_equal(harness_read_line(u->server.out_fd, "ACCEPT", NULL, 0, T), 0);
	return 0;
}

static int setup_upstream_tls(void **state)
{
	return start_upstream_tls(state, "ca.pem");
}

static int setup_upstream_wrong_ca(void **state)
{
	return start_upstream_tls(state, "other-ca.pem");
}

static int teardown_upstream(void **state)
{
	struct upstream_tls *u = *state;
	int rc = fixture_finish(&u->f, PASSWORD);

	harness_cleanup(&u->server);
	free(u);
	assert_int_equal(rc, 0);
	return 0;
}

static void the_upstream_is_reached_over_tls(void **state)
{
	struct upstream_tls *u = *state;
	char buf[4096];
	int fd = fixture_login(u->f.port, "alice", PASSWORD);

	assert_true(fd >= 0);
	send_str(fd, "olleh\n");
	assert_true(fixture_expect(fd, "hello\n", buf, sizeof(buf), T) > 0);
	close(fd);
}

static void an_upstream_certificate_from_another_ca_is_refused(void **state)
{
	struct upstream_tls *u = *state;
	char buf[4096];
	int fd = harness_connect("127.0.0.1", u->f.port);

	assert_true(fd >= 0);
	send_str(fd, "alice\n" PASSWORD "\n");
	assert_true(fixture_expect(fd, "Service unavailable.\n", buf, sizeof(buf), T) > 0);
	close(fd);
	assert_int_equal(fixture_log_wait(&u->f, "upstream connect failed", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "certificate verify failed"));
}

/* ---- configuration ----------------------------------------------------------- */

/* sockgate -t checks the pair and says when the certificate runs out soon. */
static void check_mode_checks_the_pair(void **state)
{
	struct fixture f;
	struct harness_proc p;
	char crt[128], key[128], other[128], text[1024], err[4096];
	const char *argv[] = {"sockgate", "-t", "-c", f.conf, NULL};
	ssize_t n;

	(void)state;
	assert_int_equal(fixture_init(&f, users), 0);
	f.upstream_port = 9;
	pki_path(crt, sizeof(crt), "server.pem");
	pki_path(key, sizeof(key), "server.key");
	pki_path(other, sizeof(other), "renewed.key");
	snprintf(text, sizeof(text), "tls = { certificate = \"%s\"; key = \"%s\"; };", crt, key);
	assert_int_equal(fixture_simple_config(&f, text), 0);
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_equal(p.exit_code, 0);
	n = harness_read_all(p.err_fd, err, sizeof(err) - 1, T);
	err[n > 0 ? n : 0] = '\0';
	/* Made for two days: it expires within the fortnight the check warns of. */
	assert_non_null(strstr(err, "expires in"));
	harness_cleanup(&p);

	snprintf(text, sizeof(text), "tls = { certificate = \"%s\"; key = \"%s\"; };", crt, other);
	assert_int_equal(fixture_simple_config(&f, text), 0);
	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL), 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_equal(p.exit_code, 1);
	n = harness_read_all(p.err_fd, err, sizeof(err) - 1, T);
	err[n > 0 ? n : 0] = '\0';
	assert_non_null(strstr(err, "does not match the certificate"));
	harness_cleanup(&p);
	fixture_teardown(&f, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(openssl_s_client_logs_in, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(gnutls_cli_logs_in, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(socat_relays_a_mebibyte_byte_exact, setup_plain,
						teardown),
		cmocka_unit_test_setup_teardown(python_ssl_relays_binary, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(sockgate_client_verifies, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(a_client_with_another_ca_fails, setup_plain,
						teardown),
		cmocka_unit_test_setup_teardown(tls_1_1_is_refused, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(no_shared_cipher_is_refused, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(plain_text_is_refused_cleanly, setup_plain,
						teardown),
		cmocka_unit_test_setup_teardown(sessions_resume, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(ticket_keys_rotate, setup_fast_rotation, teardown),
		cmocka_unit_test_setup_teardown(half_close_crosses_tls, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(nothing_is_readable_on_the_wire, setup_plain,
						teardown),
		cmocka_unit_test_setup_teardown(a_corrupt_record_ends_the_session_with_its_reason,
						setup_plain, teardown),
		cmocka_unit_test_setup_teardown(a_required_client_certificate_is_enforced,
						setup_required, teardown),
		cmocka_unit_test_setup_teardown(a_reload_renews_the_certificate, setup_renewable,
						teardown),
		cmocka_unit_test_setup_teardown(the_upstream_is_reached_over_tls,
						setup_upstream_tls, teardown_upstream),
		cmocka_unit_test_setup_teardown(an_upstream_certificate_from_another_ca_is_refused,
						setup_upstream_wrong_ca, teardown_upstream),
		cmocka_unit_test(check_mode_checks_the_pair),
	};

	return test_exit(cmocka_run_group_tests_name("tls", tests, group_setup, group_teardown));
}
