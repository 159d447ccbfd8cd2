/* sockgate-server: a fork-per-connection TCP backend that answers each line (or, with --echo,
 * returns every byte), so the gateway and the tests have a real upstream to talk to.
 * The parent only accepts, counts and reaps; each connection lives and dies in its own child,
 * at most --max-children of them, each ended after --idle-timeout without traffic. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "errbuf.h"
#include "net.h"

#define PROG                 "sockgate-server"

#define SERVER_MAX_LISTENERS 16
#define SERVER_BACKLOG       128
/* Accepts per wake-up and listener, so one busy listener cannot starve the signals. */
#define SERVER_ACCEPT_BURST 32
#define SERVER_BACKOFF_MS   100
/* Port 0 on several addresses: retries when the kernel's pick is taken on another family. */
#define SERVER_BIND_ATTEMPTS 8
#define SERVER_MAX_LINE_LEN  4096
#define SERVER_MAX_TAG_LEN   256
#define SERVER_ECHO_BUF_LEN  (64 * 1024)
/* After refusing a line, how long and how much of the client's input to drain before close(),
 * so the kernel sends FIN rather than RST and the client gets to read our error answer. */
#define SERVER_LINGER_MS      2000
#define SERVER_LINGER_MAX_LEN (1024 * 1024)
/* Defaults and limits of -m and -i; the man page explains the defaults. */
#define SERVER_DEFAULT_MAX_CHILDREN 256
#define SERVER_MAX_MAX_CHILDREN     100000
#define SERVER_DEFAULT_IDLE_S       300
#define SERVER_MAX_IDLE_S           31536000
/* A refused connection: what the parent reads of its input before close(), without waiting,
 * so that input already queued does not turn our FIN into a RST that destroys the answer. */
#define SERVER_REFUSE_DRAIN_LEN 4096
#define SERVER_REFUSE_DRAIN_MAX 4

enum {
	EXIT_USAGE = 2,
};

enum {
	OPT_ECHO = 0x100,
	OPT_TAG,
};

struct server_config {
	const char *host; /* -l, without brackets; NULL: the loopback addresses */
	char port[NET_PORTLEN];
	int echo;
	const char *tag;
	unsigned max_children;
	long long idle_ms; /* 0: no idle timeout */
};

struct server {
	int sigfd;
	sigset_t oldmask; /* restored in each child */
	int lfd[SERVER_MAX_LISTENERS];
	size_t nlisten;
	int stopping;
	/* accept is paused until this CLOCK_MONOTONIC time (ms) after EMFILE & co. */
	long long paused_until_ms;
	int accept_err_logged;
	/* Forked and not yet reaped: counts zombies too, so it never undercounts. */
	unsigned nchildren;
	int full_logged;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [-l ADDRESS] -p PORT [-m N] [-i SECONDS] [--echo] [--tag TEXT]\n"
		"       " PROG " -h | -V\n"
		"\n"
		"  -l, --listen ADDRESS        listen on this address or name only; \"*\" for\n"
		"                              every address (default: 127.0.0.1 and [::1])\n"
		"  -p, --port PORT             TCP port; 0 picks a free one\n"
		"  -m, --max-children N        serve at most N connections at once, 1 to %d\n"
		"                              (default: %d); others are told to retry\n"
		"  -i, --idle-timeout SECONDS  close a connection without traffic for this\n"
		"                              long, 0 to %d; 0: never (default: %d)\n"
		"      --echo                  send every byte back unchanged\n"
		"      --tag TEXT              prefix answers with [TEXT]\n"
		"  -h, --help                  show this help\n"
		"  -V, --version               show the version\n",
		SERVER_MAX_MAX_CHILDREN, SERVER_DEFAULT_MAX_CHILDREN, SERVER_MAX_IDLE_S,
		SERVER_DEFAULT_IDLE_S);
}

/* A closed descriptor 0-2 would be reused for a socket, and a child's "Here is the message"
 * line would go to a client. */
static int stdio_ensure_open(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		if (open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
			return -1;
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Printable text only: the tag ends up inside every answer line. */
static int tag_is_valid(const char *tag)
{
	size_t len = strlen(tag);

	if (len == 0 || len > SERVER_MAX_TAG_LEN)
		return 0;
	for (const unsigned char *p = (const unsigned char *)tag; *p != '\0'; p++) {
		if (*p < ' ' || *p == 0x7f)
			return 0;
	}
	return 1;
}

/* Accepts "name", "1.2.3.4", "::1" or "[::1]"; strips the brackets in place. Rejects what
 * can never be a host so a typo is a usage error and not a DNS query. */
static int host_normalize(char *host)
{
	size_t len = strlen(host);

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		memmove(host, host + 1, len - 2);
		host[len - 2] = '\0';
		len -= 2;
	}
	if (len == 0 || len >= NET_HOSTLEN)
		return -1;
	for (const unsigned char *p = (const unsigned char *)host; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f || *p == '[' || *p == ']' || *p == '/')
			return -1;
	}
	return 0;
}

/* The value of option, a decimal number from min to max in digits only (no sign, no space), or
 * -1 after saying on stderr which option wants what. */
static long parse_number(const char *option, const char *s, long min, long max, const char *what)
{
	long v = 0;

	if (*s == '\0')
		goto bad;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			goto bad;
		v = v * 10 + (*p - '0');
		if (v > max)
			goto bad;
	}
	if (v >= min)
		return v;
bad:
	fprintf(stderr, PROG ": %s \"%.16s\" is not %s from %ld to %ld\n", option, s, what, min,
		max);
	return -1;
}

/* Returns 0 to run, 1 when --help or --version already did the job, -1 on a usage error. */
static int server_parse_args(int argc, char **argv, struct server_config *cfg)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"port", required_argument, NULL, 'p'},
		{"max-children", required_argument, NULL, 'm'},
		{"idle-timeout", required_argument, NULL, 'i'},
		{"echo", no_argument, NULL, OPT_ECHO},
		{"tag", required_argument, NULL, OPT_TAG},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct errbuf err;
	int c, port = -1;
	long v;

	memset(cfg, 0, sizeof(*cfg));
	cfg->max_children = SERVER_DEFAULT_MAX_CHILDREN;
	cfg->idle_ms = SERVER_DEFAULT_IDLE_S * 1000LL;
	while ((c = getopt_long(argc, argv, "l:p:m:i:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (host_normalize(optarg) < 0) {
				fprintf(stderr, PROG ": invalid listen address \"%.64s\"\n",
					optarg);
				return -1;
			}
			cfg->host = optarg;
			break;
		case 'p':
			port = net_parse_port(optarg, 1, &err);
			if (port < 0) {
				fprintf(stderr, PROG ": %s\n", err.msg);
				return -1;
			}
			break;
		case 'm':
			v = parse_number("--max-children", optarg, 1, SERVER_MAX_MAX_CHILDREN,
					 "a number");
			if (v < 0)
				return -1;
			cfg->max_children = (unsigned)v;
			break;
		case 'i':
			v = parse_number("--idle-timeout", optarg, 0, SERVER_MAX_IDLE_S,
					 "a number of seconds");
			if (v < 0)
				return -1;
			cfg->idle_ms = v * 1000LL;
			break;
		case OPT_ECHO:
			cfg->echo = 1;
			break;
		case OPT_TAG:
			if (!tag_is_valid(optarg)) {
				fprintf(stderr, PROG ": --tag wants 1 to %d printable characters\n",
					SERVER_MAX_TAG_LEN);
				return -1;
			}
			cfg->tag = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf(PROG " %s\n", SOCKGATE_VERSION);
			return 1;
		default:
			/* getopt_long has already said what is wrong */
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument \"%.64s\"\n", argv[optind]);
		usage(stderr);
		return -1;
	}
	if (port < 0) {
		fprintf(stderr, PROG ": missing -p PORT\n");
		usage(stderr);
		return -1;
	}
	if (cfg->tag != NULL && cfg->echo) {
		fprintf(stderr, PROG ": --tag has no effect with --echo\n");
		return -1;
	}
	snprintf(cfg->port, sizeof(cfg->port), "%u", (unsigned)(uint16_t)port);
	return 0;
}

static void sockaddr_set_port(struct sockaddr *sa, unsigned port)
{
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)(void *)sa)->sin_port = htons((uint16_t)port);
	else if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)(void *)sa)->sin6_port = htons((uint16_t)port);
}

static void server_close_listeners(struct server *srv)
{
	for (size_t i = 0; i < srv->nlisten; i++)
		close(srv->lfd[i]);
	srv->nlisten = 0;
}

/* Without -l: reachable from this host only, through the gateway (see SECURITY in the man page). */
static const char *const server_loopback[] = {"127.0.0.1", "::1"};

/* One attempt to bind every address of every list. With an ephemeral port, the first bind
 * picks it and the others reuse it, so clients see one port. Returns 0, -1, or 1 when that
 * shared port was taken on a later address and the caller should start over. Addresses of a
 * family the kernel lacks are skipped when at least one listener remains; with optional, so
 * are addresses the host does not have (a container without ::1). */
static int server_bind_all(struct server *srv, struct addrinfo *const lists[], size_t nlists,
			   int ephemeral, int optional, struct errbuf *err)
{
	struct sockaddr_storage ss;
	struct addrinfo *ai, *prev;
	unsigned shared_port = 0;
	int skipped = 0;

	for (size_t l = 0; l < nlists; l++) {
		for (ai = lists[l]; ai != NULL; ai = ai->ai_next) {
			int fd, dup = 0;

			/* getaddrinfo may return the same address twice (e.g. from /etc/hosts). */
			for (prev = lists[l]; prev != ai; prev = prev->ai_next) {
				if (prev->ai_addrlen == ai->ai_addrlen &&
				    memcmp(prev->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0)
					dup = 1;
			}
			if (dup)
				continue;
			if (srv->nlisten == SERVER_MAX_LISTENERS)
				return errbuf_set(err, "too many addresses (at most %d listeners)",
						  SERVER_MAX_LISTENERS);
			if (ai->ai_addrlen > sizeof(ss))
				continue;
			memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
			if (ephemeral && shared_port != 0)
				sockaddr_set_port((struct sockaddr *)&ss, shared_port);
			fd = net_listen((struct sockaddr *)&ss, ai->ai_addrlen, SERVER_BACKLOG,
					err);
			if (fd < 0) {
				if (errno == EAFNOSUPPORT || (optional && errno == EADDRNOTAVAIL)) {
					skipped = 1;
					continue;
				}
				if (errno == EADDRINUSE && ephemeral && shared_port != 0)
					return 1;
				return -1;
			}
			srv->lfd[srv->nlisten++] = fd;
			if (ephemeral && shared_port == 0) {
				struct sockaddr_storage bound;
				socklen_t bl = sizeof(bound);

				if (getsockname(fd, (struct sockaddr *)&bound, &bl) == 0)
					shared_port = net_sockaddr_port((struct sockaddr *)&bound);
			}
		}
	}
	/* err still explains the last address skipped. */
	if (srv->nlisten == 0 && skipped)
		return -1;
	return 0;
}

/* Returns 0, -1 on a runtime failure, or EXIT_USAGE when the address does not resolve. */
static int server_open_listeners(struct server *srv, const struct server_config *cfg,
				 struct errbuf *err)
{
	struct addrinfo *lists[2] = {NULL, NULL};
	int ephemeral = strcmp(cfg->port, "0") == 0;
	size_t nlists = 0;
	int rc = -1;

	if (cfg->host != NULL) {
		/* "*" passive gives both wildcards, 0.0.0.0 and [::]; a kernel without IPv6
		 * then fails the socket() for [::] only, and keeps its IPv4 listener. */
		if (net_resolve(cfg->host, cfg->port, NET_RESOLVE_PASSIVE, &lists[0], err) < 0)
			return EXIT_USAGE;
		nlists = 1;
	} else {
		for (; nlists < 2; nlists++) {
			if (net_resolve(server_loopback[nlists], cfg->port,
					NET_RESOLVE_PASSIVE | NET_RESOLVE_NUMERIC, &lists[nlists],
					err) < 0)
				goto out;
		}
	}
	for (int attempt = 0; attempt < SERVER_BIND_ATTEMPTS; attempt++) {
		rc = server_bind_all(srv, lists, nlists, ephemeral, cfg->host == NULL, err);
		if (rc <= 0)
			break;
		server_close_listeners(srv);
		rc = errbuf_set(err, "no free port common to all listen addresses");
	}
out:
	if (rc < 0)
		server_close_listeners(srv);
	for (size_t l = 0; l < nlists; l++)
		freeaddrinfo(lists[l]);
	return rc;
}

/* Signals arrive through a signalfd, so the loop handles them between poll() calls and no
 * handler ever races with fork(). Children get the original mask back. */
static int server_setup_signals(struct server *srv)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, &srv->oldmask) < 0)
		return -1;
	srv->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return srv->sigfd < 0 ? -1 : 0;
}

/* SIGCHLD is coalesced, so one notification may stand for many exits: reap until none left.
 * Every child is ours and was counted at fork(), so each pid reaped frees one slot. */
static void server_reap(struct server *srv)
{
	int status;
	pid_t pid;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		if (srv->nchildren > 0)
			srv->nchildren--;
		if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM &&
		    WTERMSIG(status) != SIGINT)
			fprintf(stderr, PROG ": connection process %ld killed by signal %d\n",
				(long)pid, WTERMSIG(status));
	}
}

static void server_handle_signals(struct server *srv)
{
	struct signalfd_siginfo si;
	ssize_t n;

	for (;;) {
		n = read(srv->sigfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			return;
		if (si.ssi_signo == SIGCHLD) {
			server_reap(srv);
		} else if (!srv->stopping) {
			fprintf(stderr, PROG ": terminating on signal %u\n", si.ssi_signo);
			srv->stopping = 1;
		}
	}
}

/* Copies msg into out for the operator's terminal, with control bytes as \xNN. Returns the
 * length; out must hold 4 * len bytes. */
static size_t sanitize(const char *msg, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)msg[i];

		if (c < ' ' || c == 0x7f || c == '\\') {
			out[o++] = '\\';
			if (c == '\\') {
				out[o++] = '\\';
				continue;
			}
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		} else {
			out[o++] = (char)c;
		}
	}
	return o;
}

/* One connection, in its child. */
struct session {
	int fd; /* non-blocking, so no read or write can wait past the idle timeout */
	const struct server_config *cfg;
	const char *peer;
	/* 0, or what the wait that ran out of cfg->idle_ms waited for (POLLIN or POLLOUT): the
	 * connection ends for that */
	short idle_on;
};

/* Waits until the socket is ready for events, or the idle timeout passes without that (then
 * sets idle_on). Returns 0 when ready, -1 when idle or on error. Every read and write waits here,
 * so the clock restarts whenever a byte moves either way. */
static int session_wait(struct session *s, short events)
{
	struct pollfd pfd = {.fd = s->fd, .events = events};
	long long deadline = now_ms() + s->cfg->idle_ms;
	long long left = -1;
	int n;

	for (;;) {
		if (s->cfg->idle_ms > 0) {
			left = deadline - now_ms();
			if (left <= 0) {
				s->idle_on = events;
				return -1;
			}
			if (left > INT_MAX)
				left = INT_MAX;
		}
		n = poll(&pfd, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* read() bounded by the idle timeout. Returns the count, 0 at EOF, or -1 (idle, or errno). */
static ssize_t session_read(struct session *s, void *buf, size_t len)
{
	ssize_t n;

	for (;;) {
		if (session_wait(s, POLLIN) < 0)
			return -1;
		n = read(s->fd, buf, len);
		if (n >= 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
			return n;
	}
}

/* Writes all of buf, giving up when the client takes no byte for the idle timeout. Returns 0,
 * or -1 (idle, or errno). */
static int session_write_all(struct session *s, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(s->fd, buf, len);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (session_wait(s, POLLOUT) < 0)
			return -1;
	}
	return 0;
}

/* No traffic for the idle timeout: a process and a slot of --max-children are worth more than
 * a connection nobody uses. In message mode, when every answer went out whole, the client
 * expects lines and gets one saying why; in echo mode any text would pass for echoed data, and
 * after a stalled write it would end up inside a cut answer. Never waits. */
static void session_idle_close(struct session *s)
{
	long long idle_s = s->cfg->idle_ms / 1000;
	char msg[64];
	int len;

	fprintf(stderr, PROG ": %s: idle for %lld s, closing\n", s->peer, idle_s);
	if (!s->cfg->echo && s->idle_on == POLLIN) {
		len = snprintf(msg, sizeof(msg), "error: idle timeout (%lld s), closing\n", idle_s);
		(void)send(s->fd, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	close(s->fd);
}

/* Logs the message on stdout, then answers it. stdout is shared by all children, so each line
 * goes out in one write() and lines from concurrent clients do not mix. */
static int session_answer(struct session *s, const char *msg, size_t len)
{
	static const char here[] = "Here is the message: ";
	static const char got[] = "I got your message: ";
	static char line[sizeof(here) + 4 * SERVER_MAX_LINE_LEN + 1];
	static char answer[SERVER_MAX_TAG_LEN + 3 + sizeof(got) + SERVER_MAX_LINE_LEN + 1];
	size_t n;

	if (len > 0 && msg[len - 1] == '\r')
		len--;
	memcpy(line, here, sizeof(here) - 1);
	n = sizeof(here) - 1;
	n += sanitize(msg, len, line + n);
	line[n++] = '\n';
	/* Losing the log line (stdout closed) is no reason to fail the client. */
	(void)net_write_all(STDOUT_FILENO, line, n);

	n = 0;
	if (s->cfg->tag != NULL) {
		size_t tlen = strlen(s->cfg->tag);

		answer[n++] = '[';
		memcpy(answer + n, s->cfg->tag, tlen);
		n += tlen;
		answer[n++] = ']';
		answer[n++] = ' ';
	}
	memcpy(answer + n, got, sizeof(got) - 1);
	n += sizeof(got) - 1;
	memcpy(answer + n, msg, len);
	n += len;
	answer[n++] = '\n';
	return session_write_all(s, answer, n);
}

/* Half-closes, then drains what the client still sends for a bounded time, so our last answer
 * is not destroyed by the RST that closing with unread input would cause. */
static void session_linger_close(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	long long deadline = now_ms() + SERVER_LINGER_MS;
	long long left;
	size_t drained = 0;
	char buf[4096];
	ssize_t n;

	if (shutdown(fd, SHUT_WR) == 0) {
		while (drained < SERVER_LINGER_MAX_LEN && (left = deadline - now_ms()) > 0) {
			if (poll(&pfd, 1, (int)left) == 0)
				break;
			n = read(fd, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
				continue;
			if (n <= 0)
				break;
			drained += (size_t)n;
		}
	}
	close(fd);
}

static int session_message(struct session *s)
{
	static const char too_long[] = "error: line too long (limit 4096 bytes), closing\n";
	/* One byte more than the longest line, for its newline. */
	static char buf[SERVER_MAX_LINE_LEN + 1];
	size_t len = 0, start;
	char *nl;
	ssize_t n;

	for (;;) {
		n = session_read(s, buf + len, sizeof(buf) - len);
		if (n < 0) {
			if (s->idle_on == 0 && errno != ECONNRESET)
				fprintf(stderr, PROG ": %s: read: %s\n", s->peer, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		start = 0;
		while ((nl = memchr(buf + start, '\n', len - start)) != NULL) {
			if (session_answer(s, buf + start, (size_t)(nl - (buf + start))) < 0)
				goto fail;
			start = (size_t)(nl - buf) + 1;
		}
		memmove(buf, buf + start, len - start);
		len -= start;
		if (len == sizeof(buf)) {
			fprintf(stderr, PROG ": %s: line longer than %d bytes, closing\n", s->peer,
				SERVER_MAX_LINE_LEN);
			(void)session_write_all(s, too_long, sizeof(too_long) - 1);
			session_linger_close(s->fd);
			return -1;
		}
	}
	/* A last line without its newline is still a message. */
	if (len > 0 && session_answer(s, buf, len) < 0)
		goto fail;
	close(s->fd);
	return 0;
fail:
	if (s->idle_on != 0) {
		session_idle_close(s);
		return 0;
	}
	close(s->fd);
	return -1;
}

static int session_echo(struct session *s)
{
	static char buf[SERVER_ECHO_BUF_LEN];
	ssize_t n;

	for (;;) {
		n = session_read(s, buf, sizeof(buf));
		if (n < 0) {
			if (s->idle_on == 0 && errno != ECONNRESET)
				fprintf(stderr, PROG ": %s: read: %s\n", s->peer, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		if (session_write_all(s, buf, (size_t)n) < 0)
			goto fail;
	}
	/* Everything has been written back: tell the client there is no more. */
	shutdown(s->fd, SHUT_WR);
	close(s->fd);
	return 0;
fail:
	if (s->idle_on != 0) {
		session_idle_close(s);
		return 0;
	}
	close(s->fd);
	return -1;
}

/* Runs in the child: drops what belongs to the parent, serves one client, never returns. */
static void server_child(struct server *srv, const struct server_config *cfg, int fd,
			 const char *peer)
{
	struct session sess = {.fd = fd, .cfg = cfg, .peer = peer};
	int rc;

	close(srv->sigfd);
	for (size_t i = 0; i < srv->nlisten; i++)
		close(srv->lfd[i]);
	sigprocmask(SIG_SETMASK, &srv->oldmask, NULL);
	if (net_set_nonblock(fd, 1) < 0) {
		fprintf(stderr, PROG ": %s: fcntl: %s\n", peer, strerror(errno));
		close(fd);
		_exit(1);
	}
	rc = cfg->echo ? session_echo(&sess) : session_message(&sess);
	/* _exit: stdio buffers inherited from the parent must not be flushed twice. */
	_exit(rc == 0 ? 0 : 1);
}

static void server_pause_accept(struct server *srv)
{
	srv->paused_until_ms = now_ms() + SERVER_BACKOFF_MS;
}

/* At the limit: tells the client and closes at once. The parent never waits on a client, so
 * the answer goes out only if it fits the socket buffer, which an empty new one always has. */
static void server_refuse(struct server *srv, const struct server_config *cfg, int fd,
			  const char *peer)
{
	static const char busy[] = "Server busy, try again later.\n";
	char buf[SERVER_REFUSE_DRAIN_LEN];

	/* Once per spell at the limit: a flood must not flood the log too. */
	if (!srv->full_logged)
		fprintf(stderr,
			PROG ": %u connection processes, the limit; refusing %s and whoever "
			     "follows until one ends\n",
			cfg->max_children, peer);
	srv->full_logged = 1;
	(void)send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	/* Input already queued would turn close() into a RST that can destroy the answer. */
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < SERVER_REFUSE_DRAIN_MAX; i++) {
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
	}
	close(fd);
}

static void server_accept(struct server *srv, const struct server_config *cfg, int lfd)
{
	struct sockaddr_storage ss;
	char peer[NET_ADDRSTRLEN];
	socklen_t sl;
	pid_t pid;
	int fd;

	for (int i = 0; i < SERVER_ACCEPT_BURST; i++) {
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				return;
			/* The connection died in the queue, or a network error Linux passes on
			 * from the new socket: nothing wrong with the listener. */
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
			case EPERM:
			case ENETDOWN:
			case ENETUNREACH:
			case EHOSTDOWN:
			case EHOSTUNREACH:
			case ENONET:
			case ENOPROTOOPT:
			case EOPNOTSUPP:
				continue;
			default:
				/* EMFILE, ENFILE, ENOBUFS, ENOMEM or worse: the pending connection
				 * stays queued and poll would report it again at once, so stop
				 * watching the listeners for a while instead of spinning. */
				if (!srv->accept_err_logged)
					fprintf(stderr, PROG ": accept: %s; pausing %d ms\n",
						strerror(errno), SERVER_BACKOFF_MS);
				srv->accept_err_logged = 1;
				server_pause_accept(srv);
				return;
			}
		}
		srv->accept_err_logged = 0;
		net_format_addr((struct sockaddr *)&ss, peer, sizeof(peer));
		/* A child may have exited since the last SIGCHLD was read: count it out first. */
		if (srv->nchildren >= cfg->max_children)
			server_reap(srv);
		if (srv->nchildren >= cfg->max_children) {
			server_refuse(srv, cfg, fd, peer);
			continue;
		}
		srv->full_logged = 0;
		pid = fork();
		if (pid == 0)
			server_child(srv, cfg, fd, peer);
		if (pid < 0) {
			fprintf(stderr, PROG ": fork for %s: %s; connection closed\n", peer,
				strerror(errno));
			close(fd);
			/* Out of processes or memory: give the children time to finish. */
			server_pause_accept(srv);
			return;
		}
		srv->nchildren++;
		close(fd);
	}
}

static int server_run(struct server *srv, const struct server_config *cfg)
{
	struct pollfd pfd[1 + SERVER_MAX_LISTENERS];
	int timeout, n;
	nfds_t nfds;

	while (!srv->stopping) {
		long long now = now_ms();

		pfd[0].fd = srv->sigfd;
		pfd[0].events = POLLIN;
		nfds = 1;
		timeout = -1;
		if (srv->paused_until_ms > now) {
			timeout = (int)(srv->paused_until_ms - now);
		} else {
			for (size_t i = 0; i < srv->nlisten; i++) {
				pfd[nfds].fd = srv->lfd[i];
				pfd[nfds].events = POLLIN;
				nfds++;
			}
		}
		n = poll(pfd, nfds, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
			return -1;
		}
		if (pfd[0].revents != 0)
			server_handle_signals(srv);
		for (nfds_t i = 1; i < nfds && !srv->stopping; i++) {
			if (pfd[i].revents != 0 && srv->paused_until_ms <= now_ms())
				server_accept(srv, cfg, pfd[i].fd);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct server_config cfg;
	struct server srv;
	struct errbuf err;
	char name[NET_ADDRSTRLEN];
	int rc;

	rc = server_parse_args(argc, argv, &cfg);
	if (rc != 0)
		return rc > 0 ? EXIT_SUCCESS : EXIT_USAGE;

	if (stdio_ensure_open() < 0)
		return EXIT_FAILURE;
	memset(&srv, 0, sizeof(srv));
	srv.sigfd = -1;
	if (server_setup_signals(&srv) < 0) {
		fprintf(stderr, PROG ": signal set-up: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	rc = server_open_listeners(&srv, &cfg, &err);
	if (rc != 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		rc = rc == EXIT_USAGE ? EXIT_USAGE : EXIT_FAILURE;
		goto out;
	}
	for (size_t i = 0; i < srv.nlisten; i++) {
		net_format_local(srv.lfd[i], name, sizeof(name));
		fprintf(stderr, PROG ": listening on %s\n", name);
	}
	/* A no-op without NOTIFY_SOCKET. Children never notify, so the variable may stay. */
	sd_notify(0, "READY=1");

	rc = server_run(&srv, &cfg) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
	sd_notify(0, "STOPPING=1");
	/* Children keep serving their clients and exit on their own (or with the service's
	 * process group); nothing here waits for them. */
	server_close_listeners(&srv);
out:
	close(srv.sigfd);
	return rc;
}
