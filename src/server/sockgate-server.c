/* sockgate-server: a fork-per-connection TCP backend that answers each line (or, with --echo,
 * returns every byte), so the gateway and the tests have a real upstream to talk to.
 * The parent only accepts and reaps; each connection lives and dies in its own child. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
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

enum {
	EXIT_USAGE = 2,
};

enum {
	OPT_ECHO = 0x100,
	OPT_TAG,
};

struct server_config {
	const char *host; /* -l, without brackets; NULL: every address */
	char port[NET_PORTLEN];
	int echo;
	const char *tag;
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
};

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [-l ADDRESS] -p PORT [--echo] [--tag TEXT]\n"
		   "       " PROG " -h | -V\n"
		   "\n"
		   "  -l, --listen ADDRESS  listen on this address or name only\n"
		   "                        (default: 0.0.0.0 and [::])\n"
		   "  -p, --port PORT       TCP port; 0 picks a free one\n"
		   "      --echo            send every byte back unchanged\n"
		   "      --tag TEXT        prefix answers with [TEXT]\n"
		   "  -h, --help            show this help\n"
		   "  -V, --version         show the version\n");
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

/* Returns 0 to run, 1 when --help or --version already did the job, -1 on a usage error. */
static int server_parse_args(int argc, char **argv, struct server_config *cfg)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"port", required_argument, NULL, 'p'},
		{"echo", no_argument, NULL, OPT_ECHO},
		{"tag", required_argument, NULL, OPT_TAG},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct errbuf err;
	int c, port = -1;

	memset(cfg, 0, sizeof(*cfg));
	while ((c = getopt_long(argc, argv, "l:p:hV", longopts, NULL)) != -1) {
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

/* One attempt to bind every address. With an ephemeral port, the first bind picks it and the
 * others reuse it, so clients see one port. Returns 0, -1, or 1 when that shared port was taken
 * on a later address and the caller should start over. Addresses of a family the kernel lacks
 * are skipped when at least one listener remains. */
static int server_bind_all(struct server *srv, struct addrinfo *list, int ephemeral,
			   struct errbuf *err)
{
	struct sockaddr_storage ss;
	struct addrinfo *ai, *prev;
	unsigned shared_port = 0;
	int skipped_family = 0;

	for (ai = list; ai != NULL; ai = ai->ai_next) {
		int fd, dup = 0;

		/* getaddrinfo may return the same address twice (e.g. from /etc/hosts). */
		for (prev = list; prev != ai; prev = prev->ai_next) {
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
		fd = net_listen((struct sockaddr *)&ss, ai->ai_addrlen, SERVER_BACKLOG, err);
		if (fd < 0) {
			if (errno == EAFNOSUPPORT) {
				skipped_family = 1;
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
	if (srv->nlisten == 0 && skipped_family)
		return errbuf_set(err, "no usable address family for the listen address");
	return 0;
}

/* Returns 0, -1 on a runtime failure, or EXIT_USAGE when the address does not resolve. */
static int server_open_listeners(struct server *srv, const struct server_config *cfg,
				 struct errbuf *err)
{
	/* "*" passive gives both wildcards, 0.0.0.0 and [::]; a kernel without IPv6 then
	 * fails the socket() for [::] only, and keeps its IPv4 listener. */
	const char *host = cfg->host != NULL ? cfg->host : "*";
	int ephemeral = strcmp(cfg->port, "0") == 0;
	struct addrinfo *list;
	int rc = -1;

	if (net_resolve(host, cfg->port, NET_RESOLVE_PASSIVE, &list, err) < 0)
		return EXIT_USAGE;
	for (int attempt = 0; attempt < SERVER_BIND_ATTEMPTS; attempt++) {
		rc = server_bind_all(srv, list, ephemeral, err);
		if (rc <= 0)
			break;
		server_close_listeners(srv);
		rc = errbuf_set(err, "no free port common to all listen addresses");
	}
	if (rc < 0)
		server_close_listeners(srv);
	freeaddrinfo(list);
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

/* SIGCHLD is coalesced, so one notification may stand for many exits: reap until none left. */
static void server_reap(void)
{
	int status;
	pid_t pid;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
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
			server_reap();
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

/* Logs the message on stdout, then answers it. stdout is shared by all children, so each line
 * goes out in one write() and lines from concurrent clients do not mix. */
static int session_answer(int fd, const struct server_config *cfg, const char *msg, size_t len)
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
	if (cfg->tag != NULL) {
		size_t tlen = strlen(cfg->tag);

		answer[n++] = '[';
		memcpy(answer + n, cfg->tag, tlen);
		n += tlen;
		answer[n++] = ']';
		answer[n++] = ' ';
	}
	memcpy(answer + n, got, sizeof(got) - 1);
	n += sizeof(got) - 1;
	memcpy(answer + n, msg, len);
	n += len;
	answer[n++] = '\n';
	return net_write_all(fd, answer, n);
}

/* Half-closes, then drains what the client still sends for a bounded time, so our last answer
 * is not destroyed by the RST that closing with unread input would cause. */
static void session_linger_close(int fd)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = 200 * 1000};
	long long deadline = now_ms() + SERVER_LINGER_MS;
	size_t drained = 0;
	char buf[4096];
	ssize_t n;

	if (shutdown(fd, SHUT_WR) == 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0) {
		while (drained < SERVER_LINGER_MAX_LEN && now_ms() < deadline) {
			n = read(fd, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				break;
			drained += (size_t)n;
		}
	}
	close(fd);
}

static int session_message(int fd, const struct server_config *cfg, const char *peer)
{
	static const char too_long[] = "error: line too long (limit 4096 bytes), closing\n";
	/* One byte more than the longest line, for its newline. */
	static char buf[SERVER_MAX_LINE_LEN + 1];
	size_t len = 0, start;
	char *nl;
	ssize_t n;

	for (;;) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != ECONNRESET)
				fprintf(stderr, PROG ": %s: read: %s\n", peer, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		start = 0;
		while ((nl = memchr(buf + start, '\n', len - start)) != NULL) {
			if (session_answer(fd, cfg, buf + start, (size_t)(nl - (buf + start))) < 0)
				goto fail;
			start = (size_t)(nl - buf) + 1;
		}
		memmove(buf, buf + start, len - start);
		len -= start;
		if (len == sizeof(buf)) {
			fprintf(stderr, PROG ": %s: line longer than %d bytes, closing\n", peer,
				SERVER_MAX_LINE_LEN);
			(void)net_write_all(fd, too_long, sizeof(too_long) - 1);
			session_linger_close(fd);
			return -1;
		}
	}
	/* A last line without its newline is still a message. */
	if (len > 0 && session_answer(fd, cfg, buf, len) < 0)
		goto fail;
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

static int session_echo(int fd, const char *peer)
{
	static char buf[SERVER_ECHO_BUF_LEN];
	ssize_t n;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != ECONNRESET)
				fprintf(stderr, PROG ": %s: read: %s\n", peer, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		if (net_write_all(fd, buf, (size_t)n) < 0)
			goto fail;
	}
	/* Everything has been written back: tell the client there is no more. */
	shutdown(fd, SHUT_WR);
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

/* Runs in the child: drops what belongs to the parent, serves one client, never returns. */
static void server_child(struct server *srv, const struct server_config *cfg, int fd,
			 const char *peer)
{
	int rc;

	close(srv->sigfd);
	for (size_t i = 0; i < srv->nlisten; i++)
		close(srv->lfd[i]);
	sigprocmask(SIG_SETMASK, &srv->oldmask, NULL);
	rc = cfg->echo ? session_echo(fd, peer) : session_message(fd, cfg, peer);
	/* _exit: stdio buffers inherited from the parent must not be flushed twice. */
	_exit(rc == 0 ? 0 : 1);
}

static void server_pause_accept(struct server *srv)
{
	srv->paused_until_ms = now_ms() + SERVER_BACKOFF_MS;
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
