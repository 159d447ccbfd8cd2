/* harness: process, pipe and socket helpers for the integration tests (see harness.h). Knows
 * nothing of any particular program beyond the "listening on ADDR" start-up line. */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SOCKGATE_BIN_DIR
#error "SOCKGATE_BIN_DIR must name the directory of the built programs"
#endif

extern char **environ;

/* At most this many words in SOCKGATE_TEST_WRAPPER. */
#define WRAPPER_MAX_WORDS 64

long harness_scale(long full, long small)
{
	static int scale = -1; /* 0: full, 1: small */

	if (scale < 0) {
		const char *s = getenv("SOCKGATE_TEST_SCALE");

		scale = s != NULL && strcmp(s, "small") == 0;
		if (s != NULL && s[0] != '\0' && !scale)
			fprintf(stderr,
				"harness: SOCKGATE_TEST_SCALE=\"%s\" is not \"small\"; "
				"running at full scale\n",
				s);
	}
	return scale ? small : full;
}

/* A wrapper that cannot be used must not quietly leave the programs unchecked. */
static void wrapper_fatal(const char *why, const char *what)
{
	fprintf(stderr, "harness: SOCKGATE_TEST_WRAPPER: %s%s\n", why, what);
	exit(1);
}

/* The first executable name in PATH, written into out. Returns 0 or -1. */
static int path_lookup(const char *name, char *out, size_t len)
{
	const char *dirs = getenv("PATH");

	if (dirs == NULL || dirs[0] == '\0')
		dirs = "/usr/local/bin:/usr/bin:/bin";
	for (;;) {
		size_t n = strcspn(dirs, ":");

		/* An empty element is the current directory. */
		if ((size_t)snprintf(out, len, "%.*s/%s", (int)n, n > 0 ? dirs : ".", name) < len &&
		    access(out, X_OK) == 0)
			return 0;
		if (dirs[n] == '\0')
			return -1;
		dirs += n + 1;
	}
}

const char *const *harness_wrapper(void)
{
	static char text[4096], path[PATH_MAX];
	static const char *words[WRAPPER_MAX_WORDS + 1];
	static int state = -1; /* -1: not parsed yet, 0: none, 1: words */
	const char *env;
	char *save, *w;
	size_t n = 0;

	if (state >= 0)
		return state ? words : NULL;
	state = 0;
	env = getenv("SOCKGATE_TEST_WRAPPER");
	if (env == NULL)
		return NULL;
	if (strlen(env) >= sizeof(text))
		wrapper_fatal("too long", "");
	strcpy(text, env);
	for (w = strtok_r(text, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
		if (n == WRAPPER_MAX_WORDS)
			wrapper_fatal("too many words", "");
		words[n++] = w;
	}
	words[n] = NULL;
	if (n == 0)
		return NULL;
	if (strchr(words[0], '/') == NULL) {
		if (path_lookup(words[0], path, sizeof(path)) < 0)
			wrapper_fatal("not found in PATH: ", words[0]);
		words[0] = path;
	}
	state = 1;
	return words;
}

int harness_wrapper_failed(int exit_code)
{
	static const char opt[] = "--error-exitcode=";
	const char *const *w = harness_wrapper();

	for (; w != NULL && *w != NULL; w++) {
		if (strncmp(*w, opt, sizeof(opt) - 1) == 0)
			return exit_code == atoi(*w + sizeof(opt) - 1);
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, never negative: a poll() timeout. */
static int time_left(long long deadline)
{
	long long left = deadline - now_ms();

	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits for events on fd. Returns the revents, 0 on timeout, -1 on error. */
static int wait_fd(int fd, short events, long long deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int n;

	for (;;) {
		n = poll(&pfd, 1, time_left(deadline));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		return n == 0 ? 0 : pfd.revents;
	}
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void proc_reset(struct harness_proc *p)
{
	memset(p, 0, sizeof(*p));
	p->in_fd = -1;
	p->out_fd = -1;
	p->err_fd = -1;
}

/* environ with the "NAME=value" entries of extra put first and their old values left out. The
 * strings are not copied; free() only the array. */
static char **env_build(const char *const extra[])
{
	size_t n = 0, m = 0, k = 0;
	char **envp;

	while (environ[n] != NULL)
		n++;
	while (extra != NULL && extra[m] != NULL)
		m++;
	envp = calloc(n + m + 1, sizeof(*envp));
	if (envp == NULL)
		return NULL;
	for (size_t i = 0; i < m; i++)
		envp[k++] = (char *)extra[i];
	for (size_t i = 0; i < n; i++) {
		size_t name_len = strcspn(environ[i], "=");
		int replaced = 0;

		for (size_t j = 0; j < m && !replaced; j++)
			replaced = strncmp(extra[j], environ[i], name_len) == 0 &&
				   extra[j][name_len] == '=';
		if (!replaced)
			envp[k++] = environ[i];
	}
	return envp;
}

/* In the forked child: only async-signal-safe calls until execve. On failure, errno goes to
 * the parent through errpipe, which closes by itself when exec succeeds. */
static void spawn_child(const char *path, const char *const argv[], char **envp, int src[3],
			int errpipe, pid_t parent)
{
	struct sigaction sa;
	sigset_t none;
	int e;

	setpgid(0, 0);
	/* The test may crash before its teardown runs; the kernel then kills us. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	/* Move the sources out of 0-2 first, in case the test runs with one of them closed and a
	 * pipe landed there. */
	for (int i = 0; i < 3; i++) {
		src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
		if (src[i] < 0)
			goto fail;
	}
	for (int i = 0; i < 3; i++) {
		if (dup2(src[i], i) < 0)
			goto fail;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Sockets a test forgot to open with CLOEXEC must not keep connections alive. */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	execve(path, (char *const *)argv, envp);
fail:
	e = errno;
	if (write(errpipe, &e, sizeof(e)) < 0)
		_exit(127);
	_exit(127);
}

/* A pseudo-terminal pair, both close-on-exec and neither our controlling terminal. */
static int pty_open(int *master, int *slave)
{
	char name[128];

	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return -1;
	if (grantpt(*master) < 0 || unlockpt(*master) < 0 ||
	    ptsname_r(*master, name, sizeof(name)) != 0)
		goto fail;
	*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*slave < 0)
		goto fail;
	return 0;
fail:
	close(*master);
	*master = -1;
	return -1;
}

int harness_spawn(struct harness_proc *p, const char *const argv[], const char *const env[],
		  unsigned flags)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1};
	int nullfd = -1, src[3], e, rc = -1;
	const char *const *wrapper = NULL;
	const char **cmd = NULL, *exe;
	char path[PATH_MAX];
	char **envp = NULL;
	pid_t parent = getpid(), pid;
	size_t nw = 0, na = 0;
	ssize_t n;

	proc_reset(p);
	/* Writing to the stdin of a program that has already exited must fail with EPIPE, not
	 * kill the test. Children get the default back before exec. */
	signal(SIGPIPE, SIG_IGN);
	if (strchr(argv[0], '/') != NULL) {
		snprintf(path, sizeof(path), "%s", argv[0]);
	} else {
		snprintf(path, sizeof(path), "%s/%s", SOCKGATE_BIN_DIR, argv[0]);
		wrapper = harness_wrapper();
	}
	/* The command: the wrapper's words, then the program's path and its arguments. */
	while (wrapper != NULL && wrapper[nw] != NULL)
		nw++;
	while (argv[na] != NULL)
		na++;
	cmd = calloc(nw + na + 1, sizeof(*cmd));
	if (cmd == NULL)
		goto out;
	for (size_t i = 0; i < nw; i++)
		cmd[i] = wrapper[i];
	for (size_t i = 0; i < na; i++)
		cmd[nw + i] = argv[i];
	if (nw > 0)
		cmd[nw] = path;
	exe = nw > 0 ? wrapper[0] : path;
	envp = env_build(env);
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (envp == NULL || nullfd < 0)
		goto out;
	if (flags & HARNESS_STDIN_PTY) {
		if (pty_open(&in[1], &in[0]) < 0)
			goto out;
	} else if (!(flags & HARNESS_STDIN_NULL) && pipe2(in, O_CLOEXEC) < 0) {
		goto out;
	}
	if ((!(flags & HARNESS_STDOUT_NULL) && pipe2(out, O_CLOEXEC) < 0) ||
	    (!(flags & HARNESS_STDERR_NULL) && pipe2(err, O_CLOEXEC) < 0) ||
	    pipe2(ep, O_CLOEXEC) < 0)
		goto out;
	src[0] = in[0] >= 0 ? in[0] : nullfd;
	src[1] = out[1] >= 0 ? out[1] : nullfd;
	src[2] = err[1] >= 0 ? err[1] : nullfd;
	pid = fork();
	if (pid < 0)
		goto out;
	if (pid == 0)
		spawn_child(exe, cmd, envp, src, ep[1], parent);
	/* Also here, so kill(-pid) works even before the child got to run. */
	setpgid(pid, pid);
	close_fd(&ep[1]);
	do {
		n = read(ep[0], &e, sizeof(e));
	} while (n < 0 && errno == EINTR);
	if (n > 0) {
		fprintf(stderr, "harness: cannot run %s: %s\n", exe, strerror(e));
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		goto out;
	}
	p->pid = pid;
	p->in_fd = in[1];
	p->out_fd = out[0];
	p->err_fd = err[0];
	in[1] = out[0] = err[0] = -1;
	if (p->in_fd >= 0)
		fcntl(p->in_fd, F_SETFL, O_NONBLOCK);
	if (p->out_fd >= 0)
		fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
	if (p->err_fd >= 0)
		fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&err[i]);
		close_fd(&ep[i]);
	}
	close_fd(&nullfd);
	free(envp);
	free(cmd);
	return rc;
}

int harness_wait_exit(struct harness_proc *p, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	int pidfd, rc = -1;
	siginfo_t si;

	if (p->pid <= 0)
		return -1;
	if (p->exited)
		return 0;
	/* A pidfd becomes readable when the process exits. Without one (old kernel, seccomp) we
	 * fall back to checking every 10 ms. */
	pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	for (;;) {
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (si.si_pid == p->pid) {
			p->exited = 1;
			if (si.si_code == CLD_EXITED) {
				p->exit_code = si.si_status;
				p->term_signal = 0;
			} else {
				p->exit_code = -1;
				p->term_signal = si.si_status;
			}
			rc = 0;
			break;
		}
		if (time_left(deadline) == 0)
			break;
		if (pidfd >= 0)
			wait_fd(pidfd, POLLIN, deadline);
		else
			poll(NULL, 0, time_left(deadline) < 10 ? time_left(deadline) : 10);
	}
	if (pidfd >= 0)
		close(pidfd);
	return rc;
}

void harness_dump_ready(int fd, const char *title)
{
	char buf[4096];
	ssize_t n;

	if (fd < 0)
		return;
	fprintf(stderr, "--- %s ---\n", title);
	while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
		if (n > 0)
			fwrite(buf, 1, (size_t)n, stderr);
	}
	fprintf(stderr, "--- end of %s ---\n", title);
}

void harness_cleanup(struct harness_proc *p)
{
	if (p->pid > 0) {
		/* p is not reaped yet, so its pid still names its group and nobody else's. */
		kill(-p->pid, SIGKILL);
		kill(p->pid, SIGKILL);
		while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
			;
		close_fd(&p->in_fd);
		close_fd(&p->out_fd);
		close_fd(&p->err_fd);
	}
	proc_reset(p);
}

int harness_read_line(int fd, const char *needle, char *line, size_t len, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	char buf[8192];
	size_t n = 0;
	ssize_t r;
	char c;

	for (;;) {
		int ev = wait_fd(fd, POLLIN, deadline);

		if (ev <= 0)
			return -1;
		r = read(fd, &c, 1);
		if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (r < 0)
			return -1;
		if (r == 1 && c != '\n') {
			if (n < sizeof(buf) - 1)
				buf[n++] = c;
			continue;
		}
		/* A newline, or EOF, which ends an unterminated last line. */
		buf[n] = '\0';
		if ((n > 0 || r == 1) && strstr(buf, needle) != NULL) {
			if (line != NULL && len > 0)
				snprintf(line, len, "%s", buf);
			return 0;
		}
		if (r == 0)
			return -1;
		n = 0;
	}
}

int harness_parse_port(const char *line)
{
	const char *p = strstr(line, "listening on ");
	char *end;
	long v;

	if (p == NULL)
		return -1;
	p = strrchr(p, ':');
	if (p == NULL)
		return -1;
	v = strtol(p + 1, &end, 10);
	if (end == p + 1 || (*end != '\0' && *end != ' ' && *end != '\r') || v < 1 || v > 65535)
		return -1;
	return (int)v;
}

int harness_read_port(int fd, int timeout_ms)
{
	char line[512];

	if (harness_read_line(fd, "listening on ", line, sizeof(line), timeout_ms) < 0)
		return -1;
	return harness_parse_port(line);
}

ssize_t harness_read_all(int fd, void *buf, size_t cap, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	size_t got = 0;
	char extra;
	ssize_t n;

	for (;;) {
		if (wait_fd(fd, POLLIN, deadline) <= 0)
			return -1;
		/* Buffer full: one more byte tells EOF (fine) from too much data. */
		if (got == cap)
			n = read(fd, &extra, 1);
		else
			n = read(fd, (char *)buf + got, cap - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return (ssize_t)got;
		if (got == cap)
			return -1;
		got += (size_t)n;
	}
}

ssize_t harness_read_some(int fd, void *buf, size_t cap, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		ssize_t n;

		if (wait_fd(fd, POLLIN, deadline) <= 0)
			return -1;
		n = read(fd, buf, cap);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		return n;
	}
}

int harness_read_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		if (wait_fd(fd, POLLIN, deadline) <= 0)
			return -1;
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

int harness_write_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		if (wait_fd(fd, POLLOUT, deadline) <= 0)
			return -1;
		n = write(fd, p, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t harness_exchange(int fd, const void *out, size_t out_len, void *in, size_t in_cap,
			 int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	size_t sent = 0, got = 0;
	int shut = 0, flags;
	struct pollfd pfd;
	ssize_t n;
	char extra;

	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -1;
	for (;;) {
		if (sent == out_len && !shut) {
			if (shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN)
				return -1;
			shut = 1;
		}
		pfd.fd = fd;
		pfd.events = POLLIN | (sent < out_len ? POLLOUT : 0);
		n = poll(&pfd, 1, time_left(deadline));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		if (pfd.revents & POLLOUT) {
			size_t chunk = out_len - sent > 65536 ? 65536 : out_len - sent;

			n = send(fd, (const char *)out + sent, chunk, MSG_NOSIGNAL);
			if (n > 0) {
				sent += (size_t)n;
			} else if (errno == EPIPE || errno == ECONNRESET) {
				/* The peer stopped reading; what it sent back still counts. */
				sent = out_len;
			} else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
				return -1;
			}
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			if (got == in_cap)
				n = recv(fd, &extra, 1, 0);
			else
				n = recv(fd, (char *)in + got, in_cap - got, 0);
			if (n == 0)
				return (ssize_t)got;
			if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			if (n > 0 && got == in_cap)
				return -1;
			if (n > 0)
				got += (size_t)n;
		}
	}
}

/* Fills ss from a numeric IPv4 or IPv6 address and a port. */
static int sockaddr_fill(struct sockaddr_storage *ss, socklen_t *len, const char *ip, int port)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return 0;
	}
	errno = EINVAL;
	return -1;
}

long long harness_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void harness_bin_path(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", SOCKGATE_BIN_DIR, name);
}

int harness_connect(const char *ip, int port)
{
	return harness_connect_from(NULL, ip, port);
}

int harness_connect_from(const char *src, const char *ip, int port)
{
	struct sockaddr_storage ss, from;
	socklen_t len, from_len;
	int fd;

	if (sockaddr_fill(&ss, &len, ip, port) < 0 ||
	    (src != NULL && sockaddr_fill(&from, &from_len, src, 0) < 0))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if ((src != NULL && bind(fd, (struct sockaddr *)&from, from_len) < 0) ||
	    connect(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void harness_loopback_source(unsigned n, char *buf, size_t len)
{
	/* 127.1.0.1, 127.1.0.2, ...: 250 to a /24, none of them 127.0.0.1. */
	snprintf(buf, len, "127.%u.%u.%u", 1 + n / (250u * 250u), (n / 250u) % 250u, 1 + n % 250u);
}

int harness_listen(const char *ip, int *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (sockaddr_fill(&ss, &len, ip, 0) < 0)
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0)
		goto fail;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		goto fail;
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
fail:
	close(fd);
	return -1;
}

int harness_accept(int lfd, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	int fd;

	for (;;) {
		if (wait_fd(lfd, POLLIN, deadline) <= 0)
			return -1;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			return -1;
	}
}

int harness_notify_open(char *path, size_t len)
{
	static unsigned counter;
	struct sockaddr_un sun;
	char name[64];
	socklen_t sl;
	int fd;

	snprintf(name, sizeof(name), "sockgate-test-%ld-%u", (long)getpid(), counter++);
	if (strlen(name) + 2 > len)
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	/* Abstract: nothing to unlink, even when the test crashes. */
	memcpy(sun.sun_path + 1, name, strlen(name));
	sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sun, sl) < 0) {
		close(fd);
		return -1;
	}
	snprintf(path, len, "@%s", name);
	return fd;
}

int harness_notify_wait(int fd, const char *assignment, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	size_t alen = strlen(assignment);
	char buf[4096];
	ssize_t n;

	for (;;) {
		if (wait_fd(fd, POLLIN, deadline) <= 0)
			return -1;
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0)
			return -1;
		buf[n] = '\0';
		for (char *l = buf; l != NULL && *l != '\0';) {
			char *nl = strchr(l, '\n');
			size_t llen = nl != NULL ? (size_t)(nl - l) : strlen(l);

			if (llen == alen && memcmp(l, assignment, alen) == 0)
				return 0;
			l = nl != NULL ? nl + 1 : NULL;
		}
	}
}

int harness_count_children(pid_t parent, int zombies_only)
{
	struct dirent *de;
	char path[64], buf[1024];
	int count = 0;
	DIR *d;

	d = opendir("/proc");
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		char state, *rparen;
		ssize_t n;
		int fd, ppid;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%.16s/stat", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* gone meanwhile */
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		/* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
		rparen = strrchr(buf, ')');
		if (rparen == NULL || sscanf(rparen + 1, " %c %d", &state, &ppid) != 2)
			continue;
		if (ppid == parent && (!zombies_only || state == 'Z'))
			count++;
	}
	closedir(d);
	return count;
}

int harness_wait_no_children(pid_t parent, int zombies_only, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	int n;

	for (;;) {
		n = harness_count_children(parent, zombies_only);
		if (n == 0)
			return 0;
		if (n < 0 || time_left(deadline) == 0)
			return -1;
		poll(NULL, 0, time_left(deadline) < 10 ? time_left(deadline) : 10);
	}
}

int harness_proc_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

long long harness_proc_cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *rparen;
	unsigned long long user, sys;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
	 * utime stime ...": comm may hold spaces and parentheses. */
	rparen = strrchr(buf, ')');
	if (rparen == NULL ||
	    sscanf(rparen + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &user,
		   &sys) != 2)
		return -1;
	return (long long)((user + sys) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}
