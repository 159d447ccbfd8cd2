/* fixture: a sockgate daemon in a temporary directory (see fixture.h). */
#include "fixture.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_file(const char *path, const char *text, mode_t mode)
{
	char tmp[PATH_MAX + 64];
	int fd;
	size_t len = strlen(text);

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	if (write(fd, text, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	fchmod(fd, mode);
	close(fd);
	return rename(tmp, path);
}

int fixture_write_users(struct fixture *f, const char *const users[])
{
	char text[16384] = "# test users\n";
	size_t o = strlen(text);

	for (size_t i = 0; users != NULL && users[i] != NULL; i += 2) {
		struct crypt_data cd;
		char salt[CRYPT_GENSALT_OUTPUT_SIZE];
		const char *h;

		memset(&cd, 0, sizeof(cd));
		if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL)
			return -1;
		h = crypt_r(users[i + 1], salt, &cd);
		if (h == NULL || h[0] == '*')
			return -1;
		/* "USER:FIELDS": the fields go after the hash. */
		const char *fields = strchr(users[i], ':');
		int ulen = fields != NULL ? (int)(fields - users[i]) : (int)strlen(users[i]);

		o += (size_t)snprintf(text + o, sizeof(text) - o, "%.*s:%s%s\n", ulen, users[i], h,
				      fields != NULL ? fields : "");
	}
	return write_file(f->users, text, 0600);
}

int fixture_init(struct fixture *f, const char *const users[])
{
	memset(f, 0, sizeof(*f));
	f->notify_fd = -1;
	f->upstream.in_fd = f->upstream.out_fd = f->upstream.err_fd = -1;
	f->daemon.in_fd = f->daemon.out_fd = f->daemon.err_fd = -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/sockgate-test.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->conf, sizeof(f->conf), "%s/sockgate.conf", f->dir);
	snprintf(f->users, sizeof(f->users), "%s/users", f->dir);
	return fixture_write_users(f, users);
}

int fixture_upstream(struct fixture *f, const char *const args[])
{
	const char *argv[16] = {"sockgate-server", "-l", "127.0.0.1", "-p", "0"};
	size_t n = 5;

	for (size_t i = 0; args != NULL && args[i] != NULL && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (harness_spawn(&f->upstream, argv, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL) < 0)
		return -1;
	f->upstream_port = harness_read_port(f->upstream.err_fd, FIXTURE_TIMEOUT_MS);
	return f->upstream_port > 0 ? 0 : -1;
}

int fixture_write_config(struct fixture *f, const char *text)
{
	return write_file(f->conf, text, 0644);
}

int fixture_config(struct fixture *f, const char *top, const char *extra)
{
	char text[8192];

	char creds[PATH_MAX + 64] = "";

	if (!f->no_credentials)
		snprintf(creds, sizeof(creds), "  credentials = \"%s\";\n", f->users);
	snprintf(text, sizeof(text),
		 "%s\n"
		 "gateways = ( {\n"
		 "  name = \"test\";\n"
		 "  listen = ( \"127.0.0.1:0\", \"[::1]:0\" );\n"
		 "  upstream = \"127.0.0.1:%d\";\n"
		 "%s"
		 "  %s\n"
		 "} );\n",
		 top != NULL ? top : "", f->upstream_port, creds, extra != NULL ? extra : "");
	return fixture_write_config(f, text);
}

int fixture_simple_config(struct fixture *f, const char *extra)
{
	return fixture_config(f, NULL, extra);
}

int fixture_start(struct fixture *f)
{
	return fixture_start_with(f, NULL);
}

int fixture_start_with(struct fixture *f, const char *const prefix[])
{
	return fixture_start_env(f, prefix, NULL);
}

int fixture_start_env(struct fixture *f, const char *const prefix[], const char *const extra[])
{
	char env_notify[160], path[PATH_MAX];
	const char *env[8] = {env_notify};
	const char *argv[16];
	char line[512];
	const char *p;
	size_t cursor = 0, n = 0;

	/* Under a prefix the daemon is an argument: by its path, not its name. */
	for (; prefix != NULL && prefix[n] != NULL && n < 12; n++)
		argv[n] = prefix[n];
	harness_bin_path("sockgate", path, sizeof(path));
	argv[n] = n > 0 ? path : "sockgate";
	argv[n + 1] = "-c";
	argv[n + 2] = f->conf;
	argv[n + 3] = NULL;
	f->notify_fd = harness_notify_open(f->notify_path, sizeof(f->notify_path));
	if (f->notify_fd < 0)
		return -1;
	snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", f->notify_path);
	for (size_t i = 0;
	     extra != NULL && extra[i] != NULL && i + 2 < sizeof(env) / sizeof(env[0]); i++)
		env[i + 1] = extra[i];
	if (harness_spawn(&f->daemon, argv, env, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL) < 0)
		return -1;
	f->log = logtap_start(f->daemon.err_fd);
	if (f->log == NULL)
		return -1;
	f->daemon.err_fd = -1; /* the tap owns it now */
	if (harness_notify_wait(f->notify_fd, "READY=1", FIXTURE_TIMEOUT_MS) < 0)
		return -1;
	/* "started" follows every "listening" line. */
	if (logtap_wait(f->log, "started", NULL, NULL, 0, FIXTURE_TIMEOUT_MS) < 0)
		return -1;
	f->port = f->port6 = 0;
	while (logtap_wait(f->log, "listening", &cursor, line, sizeof(line), 0) == 0) {
		int port;

		p = strstr(line, "listen=");
		if (p == NULL)
			continue;
		p = strchr(p, ' ') != NULL ? strchr(p, ' ') : p + strlen(p);
		while (p > line && p[-1] != ':')
			p--;
		port = atoi(p);
		if (strstr(line, "listen=[") != NULL) {
			if (f->port6 == 0)
				f->port6 = port;
		} else if (f->port == 0) {
			f->port = port;
		}
	}
	return f->port > 0 ? 0 : -1;
}

int fixture_log_wait(struct fixture *f, const char *needle, char *line, size_t len)
{
	return logtap_wait(f->log, needle, &f->cursor, line, len, FIXTURE_TIMEOUT_MS);
}

int fixture_reload(struct fixture *f)
{
	if (kill(f->daemon.pid, SIGHUP) < 0)
		return -1;
	if (harness_notify_wait(f->notify_fd, "RELOADING=1", FIXTURE_TIMEOUT_MS) < 0)
		return -1;
	return harness_notify_wait(f->notify_fd, "READY=1", FIXTURE_TIMEOUT_MS);
}

int fixture_stop(struct fixture *f)
{
	if (f->daemon.pid <= 0)
		return -1;
	kill(f->daemon.pid, SIGTERM);
	if (harness_wait_exit(&f->daemon, FIXTURE_TIMEOUT_MS) < 0)
		return -1;
	return f->daemon.exit_code;
}

int fixture_stop_upstream(struct fixture *f)
{
	struct harness_proc *u = &f->upstream;

	if (u->pid <= 0)
		return 0;
	if (!u->exited &&
	    (kill(u->pid, SIGTERM) < 0 || harness_wait_exit(u, FIXTURE_TIMEOUT_MS) < 0))
		return -1;
	return u->term_signal == 0 ? u->exit_code : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void fixture_teardown(struct fixture *f, int dump)
{
	if (dump && f->log != NULL)
		logtap_dump(f->log, "sockgate log");
	/* What the upstream wrote after its port: under SOCKGATE_TEST_WRAPPER, its report. */
	if (dump && f->upstream.pid > 0)
		harness_dump_ready(f->upstream.err_fd, "sockgate-server stderr");
	harness_cleanup(&f->daemon);
	logtap_stop(f->log);
	f->log = NULL;
	harness_cleanup(&f->upstream);
	if (f->notify_fd >= 0)
		close(f->notify_fd);
	f->notify_fd = -1;
	if (f->dir[0] != '\0')
		nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	f->dir[0] = '\0';
}

ssize_t fixture_expect(int fd, const char *text, char *buf, size_t cap, int timeout_ms)
{
	size_t len = 0;

	buf[0] = '\0';
	while (strstr(buf, text) == NULL) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;

		if (len + 1 >= cap)
			return -1;
		if (poll(&p, 1, timeout_ms) <= 0)
			return -1;
		/* read(), not recv(): fd may be a client program's pipe. poll() said
		 * there is something, so it does not block. */
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
	}
	return (ssize_t)len;
}

int fixture_login(int port, const char *user, const char *password)
{
	char buf[4096], line[600];
	int fd = harness_connect("127.0.0.1", port);

	if (fd < 0)
		return -1;
	if (fixture_expect(fd, "Username: ", buf, sizeof(buf), FIXTURE_TIMEOUT_MS) < 0)
		goto fail;
	snprintf(line, sizeof(line), "%s\n", user);
	if (harness_write_all(fd, line, strlen(line), FIXTURE_TIMEOUT_MS) < 0)
		goto fail;
	if (fixture_expect(fd, "Password: ", buf, sizeof(buf), FIXTURE_TIMEOUT_MS) < 0)
		goto fail;
	snprintf(line, sizeof(line), "%s\n", password);
	if (harness_write_all(fd, line, strlen(line), FIXTURE_TIMEOUT_MS) < 0)
		goto fail;
	if (fixture_expect(fd, "You are now logged in.\n", buf, sizeof(buf), FIXTURE_TIMEOUT_MS) <
	    0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

int fixture_setup(struct fixture *f, const char *const users[], const char *const upstream_args[],
		  const char *top, const char *extra)
{
	if (fixture_init(f, users) < 0 || fixture_upstream(f, upstream_args) < 0 ||
	    fixture_config(f, top, extra) < 0 || fixture_start(f) < 0)
		return -1;
	return 0;
}

int fixture_finish(struct fixture *f, const char *secret)
{
	int rc = f->daemon.exited ? f->daemon.exit_code : fixture_stop(f);
	/* After the daemon, so that no session holds a connection to it. */
	int up = fixture_stop_upstream(f);
	int leaked = secret != NULL && f->log != NULL && logtap_contains(f->log, secret);

	if (leaked)
		fprintf(stderr, "fixture: the secret reached the daemon's log\n");
	fixture_teardown(f, rc != 0 || up != 0 || leaked);
	return rc == 0 && up == 0 && !leaked ? 0 : -1;
}
