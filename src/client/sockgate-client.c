/* sockgate-client: an interactive line client for sockgate-server and the gateway, in plain
 * text or over TLS (--tls, the server's certificate and name verified). It shows whatever the
 * server sends the moment it arrives and sends what the user types line by line, hiding the line
 * typed after a password prompt. It knows nothing else of any protocol. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "errbuf.h"
#include "net.h"
#include "tls.h"
#include "transport.h"

#define PROG                  "sockgate-client"

#define CLIENT_BUF_LEN        (64 * 1024)
#define CLIENT_MAX_PROMPT_LEN 255
#define CLIENT_MAX_TIMEOUT_S  86400
#define CLIENT_DEFAULT_PROMPT "Password: "
/* The TLS handshake's own limit when no -t is given. */
#define CLIENT_HANDSHAKE_MS 30000

enum {
	EXIT_USAGE = 2,
};

enum {
	CLIENT_CONTINUE = 1,
	CLIENT_DONE = 0,
	CLIENT_ERROR = -1,
};

struct client_config {
	char host[NET_HOSTLEN];
	char port[NET_PORTLEN];
	const char *prompt;
	int timeout_ms; /* 0: no timeout of our own */
	bool tls;
	const char *ca;         /* NULL: the system's trusted CAs */
	const char *servername; /* NULL: HOST */
	const char *cert, *key; /* a client certificate, or NULL */
	bool insecure;          /* no verification at all: asked for by name */
};

struct client {
	int sock;
	struct transport conn; /* over sock: plain TCP or TLS */
	int tty;               /* stdin is a terminal: the password prompt turns echo off */
	int stdin_eof;
	int shut_wr;
	/* Typed input not sent yet; only whole lines leave before stdin ends. It is read with
	 * read(2), never through stdio, so this is the only copy of a password in the process:
	 * whatever has been sent is wiped at once (client_to_server). */
	char in[CLIENT_BUF_LEN];
	size_t in_len;
	/* The last bytes the server sent, to spot a prompt split across reads. */
	char tail[CLIENT_MAX_PROMPT_LEN];
	size_t tail_len;
};

/* The terminal state lives in globals because the signal handlers must put it back. */
static struct termios tty_saved;
static struct termios tty_hidden;
static volatile sig_atomic_t tty_echo_off;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [-P PROMPT] [-t SECONDS] [--tls [--ca FILE] [--servername NAME]\n"
		"                       [--cert FILE --key FILE] [--insecure]] HOST PORT\n"
		"       " PROG " -h | -V\n"
		"\n"
		"  -P, --password-prompt PROMPT  hide the line typed after PROMPT\n"
		"                                (default \"" CLIENT_DEFAULT_PROMPT "\")\n"
		"  -t, --timeout SECONDS         give up connecting after SECONDS\n"
		"      --tls                     speak TLS; the server's certificate must be\n"
		"                                valid for its name (HOST or --servername)\n"
		"      --ca FILE                 trust these CAs (PEM), not the system's\n"
		"      --servername NAME         the name to ask for (SNI) and to verify\n"
		"      --cert FILE --key FILE    a client certificate and its key (PEM)\n"
		"      --insecure                verify nothing: anyone in the middle reads\n"
		"                                the password\n"
		"  -h, --help                    show this help\n"
		"  -V, --version                 show the version\n");
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A closed descriptor 0-2 would be handed to the socket, and our output would go to the server. */
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

static void tty_hide_input(void)
{
	if (tty_echo_off || tcgetattr(STDIN_FILENO, &tty_saved) < 0)
		return;
	tty_hidden = tty_saved;
	/* ECHONL would still echo the newline; we print our own after the line. */
	tty_hidden.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	tty_echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &tty_hidden) < 0)
		tty_echo_off = 0;
}

static void tty_restore(void)
{
	if (!tty_echo_off)
		return;
	tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
	tty_echo_off = 0;
}

/* Installed with SA_RESETHAND | SA_NODEFER: puts the echo back, then dies of the same signal,
 * so the shell sees the usual status. Only async-signal-safe calls here. */
static void on_fatal_signal(int sig)
{
	if (tty_echo_off)
		tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
	raise(sig);
}

/* Ctrl-Z: the shell gets its terminal back with echo on; input is hidden again on resume. */
static void on_stop_signal(int sig)
{
	int saved_errno = errno;
	int hidden = tty_echo_off;

	if (hidden)
		tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
	raise(SIGSTOP);
	if (hidden)
		tcsetattr(STDIN_FILENO, TCSANOW, &tty_hidden);
	errno = saved_errno;
}

static void client_setup_signals(int tty)
{
	static const int fatal[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
	struct sigaction sa;

	if (!tty)
		return;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_fatal_signal;
	sa.sa_flags = SA_RESETHAND | SA_NODEFER;
	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		sigaction(fatal[i], &sa, NULL);
	sa.sa_handler = on_stop_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTSTP, &sa, NULL);
}

static int parse_timeout(const char *s, int *ms)
{
	long v = 0;

	if (*s == '\0')
		return -1;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
		if (v > CLIENT_MAX_TIMEOUT_S)
			return -1;
	}
	if (v == 0)
		return -1;
	*ms = (int)v * 1000;
	return 0;
}

/* Returns 0 to run, 1 when --help or --version already did the job, -1 on a usage error. */
static int client_parse_args(int argc, char **argv, struct client_config *cfg)
{
	static const struct option longopts[] = {
		{"password-prompt", required_argument, NULL, 'P'},
		{"timeout", required_argument, NULL, 't'},
		{"tls", no_argument, NULL, 'T'},
		{"ca", required_argument, NULL, 'A'},
		{"servername", required_argument, NULL, 'N'},
		{"cert", required_argument, NULL, 'C'},
		{"key", required_argument, NULL, 'K'},
		{"insecure", no_argument, NULL, 'I'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct errbuf err;
	const char *host;
	size_t hlen;
	int c, port;

	memset(cfg, 0, sizeof(*cfg));
	cfg->prompt = CLIENT_DEFAULT_PROMPT;
	while ((c = getopt_long(argc, argv, "P:t:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'P':
			if (*optarg == '\0' || strlen(optarg) > CLIENT_MAX_PROMPT_LEN) {
				fprintf(stderr,
					PROG ": the password prompt must have 1 to %d bytes\n",
					CLIENT_MAX_PROMPT_LEN);
				return -1;
			}
			cfg->prompt = optarg;
			break;
		case 't':
			if (parse_timeout(optarg, &cfg->timeout_ms) < 0) {
				fprintf(stderr,
					PROG ": timeout \"%.16s\" is not a number of seconds "
					     "from 1 to %d\n",
					optarg, CLIENT_MAX_TIMEOUT_S);
				return -1;
			}
			break;
		case 'T':
			cfg->tls = true;
			break;
		case 'A':
			cfg->ca = optarg;
			break;
		case 'N':
			cfg->servername = optarg;
			break;
		case 'C':
			cfg->cert = optarg;
			break;
		case 'K':
			cfg->key = optarg;
			break;
		case 'I':
			cfg->insecure = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf(PROG " %s\n", SOCKGATE_VERSION);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (!cfg->tls && (cfg->ca != NULL || cfg->servername != NULL || cfg->cert != NULL ||
			  cfg->key != NULL || cfg->insecure)) {
		fprintf(stderr,
			PROG ": --ca, --servername, --cert, --key and --insecure go with --tls\n");
		return -1;
	}
	if ((cfg->cert == NULL) != (cfg->key == NULL)) {
		fprintf(stderr, PROG ": a client certificate needs both --cert and --key\n");
		return -1;
	}
	if (cfg->insecure && (cfg->ca != NULL || cfg->servername != NULL)) {
		fprintf(stderr, PROG ": --insecure verifies nothing: --ca and --servername would "
				     "be ignored\n");
		return -1;
	}
	if (argc - optind != 2) {
		fprintf(stderr, PROG ": expected HOST and PORT\n");
		usage(stderr);
		return -1;
	}
	host = argv[optind];
	hlen = strlen(host);
	/* "[::1]" as in the HOST:PORT notation the gateway's configuration uses */
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(cfg->host)) {
		fprintf(stderr, PROG ": invalid host \"%.64s\"\n", argv[optind]);
		return -1;
	}
	memcpy(cfg->host, host, hlen);
	cfg->host[hlen] = '\0';
	port = net_parse_port(argv[optind + 1], 0, &err);
	if (port < 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		return -1;
	}
	snprintf(cfg->port, sizeof(cfg->port), "%u", (unsigned)(uint16_t)port);
	return 0;
}

/* Waits for a non-blocking connect until deadline_ms (or forever if 0). Returns 0 or the
 * error, ETIMEDOUT when the deadline passed. */
static int connect_wait(int fd, long long deadline_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int timeout, n;

	for (;;) {
		timeout = -1;
		if (deadline_ms > 0) {
			long long left = deadline_ms - now_ms();

			if (left <= 0)
				return ETIMEDOUT;
			timeout = (int)left;
		}
		n = poll(&pfd, 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return ETIMEDOUT;
		return net_connect_result(fd) == 0 ? 0 : errno;
	}
}

/* Tries every address of the host in turn and says why each one failed. */
static int client_connect(const struct client_config *cfg)
{
	struct addrinfo *res, *ai;
	char name[NET_ADDRSTRLEN];
	long long deadline_ms = 0;
	struct errbuf err;
	int fd = -1, e;

	if (net_resolve(cfg->host, cfg->port, 0, &res, &err) < 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		return -1;
	}
	if (cfg->timeout_ms > 0)
		deadline_ms = now_ms() + cfg->timeout_ms;
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = net_connect(ai->ai_addr, ai->ai_addrlen, 1, &err);
		if (fd < 0) {
			fprintf(stderr, PROG ": %s\n", err.msg);
			continue;
		}
		e = connect_wait(fd, deadline_ms);
		if (e == 0)
			break;
		close(fd);
		fd = -1;
		if (e == ECONNRESET) {
			/* Connected, then aborted before we looked: the server's answer, not a
			 * reason to try its other addresses. */
			fprintf(stderr, PROG ": connection reset by peer\n");
			break;
		}
		net_format_addr(ai->ai_addr, name, sizeof(name));
		fprintf(stderr, PROG ": cannot connect to %s: %s\n", name, strerror(e));
		if (e == ETIMEDOUT && deadline_ms > 0)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

/* Blocking write to stdout that also copes with a stdout someone left non-blocking. */
static int write_stdout(const char *buf, size_t len)
{
	struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};
	ssize_t n;

	while (len > 0) {
		n = write(STDOUT_FILENO, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				poll(&pfd, 1, -1);
				continue;
			}
			fprintf(stderr, PROG ": write to standard output: %s\n", strerror(errno));
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void client_remember_tail(struct client *c, const char *buf, size_t n)
{
	size_t keep;

	if (n >= sizeof(c->tail)) {
		memcpy(c->tail, buf + n - sizeof(c->tail), sizeof(c->tail));
		c->tail_len = sizeof(c->tail);
		return;
	}
	keep = c->tail_len + n > sizeof(c->tail) ? sizeof(c->tail) - n : c->tail_len;
	memmove(c->tail, c->tail + c->tail_len - keep, keep);
	memcpy(c->tail + keep, buf, n);
	c->tail_len = keep + n;
}

static int client_from_server(struct client *c, const struct client_config *cfg)
{
	static char buf[CLIENT_BUF_LEN];
	size_t plen = strlen(cfg->prompt);
	ssize_t n;

	n = transport_recv(&c->conn, buf, sizeof(buf));
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return CLIENT_CONTINUE;
		if (errno == ECONNRESET) {
			fprintf(stderr, PROG ": connection reset by peer\n");
			return CLIENT_ERROR;
		}
		fprintf(stderr, PROG ": read from server: %s\n", strerror(errno));
		return CLIENT_ERROR;
	}
	if (n == 0)
		return CLIENT_DONE;
	client_remember_tail(c, buf, (size_t)n);
	/* The terminal echoes keys as they are typed, so echo goes off before the prompt shows,
	 * not when we get to read the answer. */
	if (c->tty && !c->stdin_eof && c->tail_len >= plen &&
	    memcmp(c->tail + c->tail_len - plen, cfg->prompt, plen) == 0)
		tty_hide_input();
	if (write_stdout(buf, (size_t)n) < 0)
		return CLIENT_ERROR;
	return CLIENT_CONTINUE;
}

static int client_from_stdin(struct client *c)
{
	ssize_t n;

	n = read(STDIN_FILENO, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return CLIENT_CONTINUE;
		fprintf(stderr, PROG ": read from standard input: %s\n", strerror(errno));
		n = 0;
	}
	if (n == 0) {
		c->stdin_eof = 1;
	} else {
		if (!tty_echo_off || memchr(c->in + c->in_len, '\n', (size_t)n) == NULL) {
			c->in_len += (size_t)n;
			return CLIENT_CONTINUE;
		}
		c->in_len += (size_t)n;
	}
	/* The hidden line is complete (or never will be): echo on, and end the line the
	 * terminal did not echo. */
	if (tty_echo_off) {
		tty_restore();
		if (write_stdout("\n", 1) < 0)
			return CLIENT_ERROR;
	}
	return CLIENT_CONTINUE;
}

/* Whole lines only, unless stdin has ended or a line does not fit the buffer. */
static size_t client_sendable(const struct client *c)
{
	const char *nl;

	if (c->stdin_eof || c->in_len == sizeof(c->in))
		return c->in_len;
	nl = memrchr(c->in, '\n', c->in_len);
	return nl == NULL ? 0 : (size_t)(nl - c->in) + 1;
}

static int client_to_server(struct client *c)
{
	size_t len = client_sendable(c);
	ssize_t n;

	n = transport_send(&c->conn, c->in, len);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return CLIENT_CONTINUE;
		/* EPIPE: an earlier reset whose error another call already consumed */
		if (errno == ECONNRESET || errno == EPIPE) {
			fprintf(stderr, PROG ": connection reset by peer\n");
			return CLIENT_ERROR;
		}
		fprintf(stderr, PROG ": send to server: %s\n", strerror(errno));
		return CLIENT_ERROR;
	}
	memmove(c->in, c->in + n, c->in_len - (size_t)n);
	c->in_len -= (size_t)n;
	/* The client may stay connected for hours after the password line left: neither the
	 * sent bytes nor the stale copy of the rest that memmove leaves behind may stay. */
	explicit_bzero(c->in + c->in_len, (size_t)n);
	return CLIENT_CONTINUE;
}

/* TLS over the connected socket: the handshake, with the server's certificate and name
 * verified unless --insecure. Returns 0, or -1 having said why. */
static int client_start_tls(struct client *c, const struct client_config *cfg)
{
	struct tls_client_settings set = {
		.ca = cfg->ca,
		.verify = !cfg->insecure,
		.certificate = cfg->cert,
		.key = cfg->key,
		.key_owner = getuid(),
	};
	int wait_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : CLIENT_HANDSHAKE_MS;
	long long deadline = now_ms() + wait_ms;
	struct tls_context *ctx;
	struct errbuf err;
	int rc = -1;

	ctx = tls_client_context(&set, &err);
	if (ctx == NULL) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		return -1;
	}
	c->conn.ops = NULL;
	if (transport_tls_client(&c->conn, c->sock, ctx,
				 cfg->insecure             ? NULL
				 : cfg->servername != NULL ? cfg->servername
							   : cfg->host,
				 &err) < 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		c->sock = -1;
		goto out;
	}
	for (;;) {
		struct pollfd pfd = {.fd = c->sock};
		long long left = deadline - now_ms();

		switch (tls_handshake(&c->conn, &err)) {
		case TLS_DONE:
			rc = 0;
			goto out;
		case TLS_WANT_READ:
			pfd.events = POLLIN;
			break;
		case TLS_WANT_WRITE:
			pfd.events = POLLOUT;
			break;
		case TLS_FAILED:
			fprintf(stderr, PROG ": TLS handshake with %s port %s failed: %s\n",
				cfg->host, cfg->port, err.msg);
			goto out;
		}
		if (left <= 0 || (poll(&pfd, 1, (int)left) == 0 && now_ms() >= deadline)) {
			fprintf(stderr, PROG ": TLS handshake with %s port %s timed out\n",
				cfg->host, cfg->port);
			goto out;
		}
	}
out:
	tls_context_unref(ctx); /* the connection keeps what it needs */
	return rc;
}

static int client_run(struct client *c, const struct client_config *cfg)
{
	struct pollfd pfd[2];
	int rc = CLIENT_CONTINUE;
	size_t sendable;

	while (rc == CLIENT_CONTINUE) {
		sendable = client_sendable(c);
		if (c->stdin_eof && c->in_len == 0 && !c->shut_wr) {
			/* Nothing more to say: half-close and keep printing until the server
			 * closes. ENOTCONN after a reset shows up on the next read. */
			(void)transport_shutdown(&c->conn);
			c->shut_wr = 1;
		}
		pfd[0].fd = c->sock;
		pfd[0].events = POLLIN | (sendable > 0 ? POLLOUT : 0);
		pfd[1].fd = STDIN_FILENO;
		pfd[1].events = POLLIN;
		if (c->stdin_eof || c->in_len == sizeof(c->in))
			pfd[1].fd = -1;
		if (poll(pfd, 2, transport_pending(&c->conn) ? 0 : -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
			return CLIENT_ERROR;
		}
		/* TLS: records already read wait inside, and poll() cannot see them. */
		if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) || transport_pending(&c->conn))
			rc = client_from_server(c, cfg);
		if (rc == CLIENT_CONTINUE && (pfd[0].revents & POLLOUT))
			rc = client_to_server(c);
		if (rc == CLIENT_CONTINUE && pfd[1].revents != 0)
			rc = client_from_stdin(c);
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct client_config cfg;
	static struct client c;
	int rc;

	rc = client_parse_args(argc, argv, &cfg);
	if (rc != 0)
		return rc > 0 ? EXIT_SUCCESS : EXIT_USAGE;
	if (stdio_ensure_open() < 0)
		return EXIT_FAILURE;
	c.tty = isatty(STDIN_FILENO);
	client_setup_signals(c.tty);

	c.sock = client_connect(&cfg);
	if (c.sock < 0)
		return EXIT_FAILURE;
	transport_tcp(&c.conn, c.sock);
	if (cfg.tls && client_start_tls(&c, &cfg) < 0) {
		transport_close(&c.conn);
		return EXIT_FAILURE;
	}
	rc = client_run(&c, &cfg);
	tty_restore();
	/* Input that was never sent may hold a password. */
	explicit_bzero(c.in, sizeof(c.in));
	transport_close(&c.conn);
	return rc == CLIENT_DONE ? EXIT_SUCCESS : EXIT_FAILURE;
}
