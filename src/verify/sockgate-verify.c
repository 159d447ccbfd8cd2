/* sockgate-verify: for a backend behind sockgate. Reads the PROXY v2 header on
 * standard input (exactly its bytes, nothing after), checks sockgate's signature
 * in it, then prints the identity or runs a command with it in the environment. */
#include "net.h"
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG            "sockgate-verify"

#define MAX_AGE_LIMIT   86400 /* seconds: a day is already a long replay window */
#define TIMEOUT_DEFAULT 10    /* seconds to wait for the header */
#define TIMEOUT_LIMIT   3600

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
	EXIT_EXEC_FAILED = 126,
	EXIT_EXEC_MISSING = 127,
};

struct options {
	const char *key_path;
	unsigned max_age_s;
	unsigned user_tlv;
	int timeout_s;  /* 0: wait as long as it takes */
	char **command; /* --exec: CMD ARGS..., NULL-terminated; NULL: print */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " --key FILE [--max-age S] [--user-tlv N] [--timeout S]\n"
		"                       [--exec CMD [ARGS...]]\n"
		"\n"
		"Reads a PROXY v2 header from standard input and checks sockgate's signature in\n"
		"it. Prints the identity, or runs CMD with it in the environment and standard\n"
		"input right after the header.\n"
		"\n"
		"  -k, --key FILE        the key sockgate signs with (raw bytes, at least %d)\n"
		"  -m, --max-age S       refuse signatures older than S seconds (default %d)\n"
		"  -u, --user-tlv N      the first of sockgate's four TLV types, 0xe0 to 0xec\n"
		"                        (default 0x%02x)\n"
		"  -t, --timeout S       wait at most S seconds for the header; 0: no limit\n"
		"                        (default %d)\n"
		"  -e, --exec CMD ARGS   run CMD with SOCKGATE_USER, SOCKGATE_GATEWAY,\n"
		"                        SOCKGATE_TARGET, SOCKGATE_UNIQUE_ID, REMOTE_ADDR and\n"
		"                        REMOTE_PORT set; the rest of the line is its arguments\n"
		"  -h, --help            show this help\n"
		"  -V, --version         show the version\n",
		PROXY_KEY_MIN, PROXY_MAX_AGE_DEFAULT, PROXY_USER_TLV_DEFAULT, TIMEOUT_DEFAULT);
}

/* A whole number from min to max, decimal or 0x hexadecimal. */
static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* Returns 0 to run, 1 when --help or --version already did the job, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"key", required_argument, NULL, 'k'},
		{"max-age", required_argument, NULL, 'm'},
		{"user-tlv", required_argument, NULL, 'u'},
		{"timeout", required_argument, NULL, 't'},
		{"exec", no_argument, NULL, 'e'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	bool exec = false;
	unsigned v;
	int c;

	memset(o, 0, sizeof(*o));
	o->max_age_s = PROXY_MAX_AGE_DEFAULT;
	o->user_tlv = PROXY_USER_TLV_DEFAULT;
	o->timeout_s = TIMEOUT_DEFAULT;
	/* '+': options end at CMD, so CMD's own options stay CMD's. */
	while ((c = getopt_long(argc, argv, "+k:m:u:t:ehV", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			o->key_path = optarg;
			break;
		case 'm':
			if (parse_uint(optarg, 1, MAX_AGE_LIMIT, &o->max_age_s) < 0) {
				fprintf(stderr,
					PROG
					": --max-age \"%.16s\" is not a number of seconds from "
					"1 to %d\n",
					optarg, MAX_AGE_LIMIT);
				return -1;
			}
			break;
		case 'u':
			if (parse_uint(optarg, PROXY_USER_TLV_MIN, PROXY_USER_TLV_MAX,
				       &o->user_tlv) < 0) {
				fprintf(stderr,
					PROG ": --user-tlv \"%.16s\" is not a TLV type from 0x%02x "
					     "to 0x%02x\n",
					optarg, PROXY_USER_TLV_MIN, PROXY_USER_TLV_MAX);
				return -1;
			}
			break;
		case 't':
			if (parse_uint(optarg, 0, TIMEOUT_LIMIT, &v) < 0) {
				fprintf(stderr,
					PROG
					": --timeout \"%.16s\" is not a number of seconds from "
					"0 to %d\n",
					optarg, TIMEOUT_LIMIT);
				return -1;
			}
			o->timeout_s = (int)v;
			break;
		case 'e':
			exec = true;
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
	if (o->key_path == NULL) {
		fprintf(stderr, PROG ": --key FILE is required\n");
		usage(stderr);
		return -1;
	}
	if (exec && optind == argc) {
		fprintf(stderr, PROG ": --exec needs a command\n");
		return -1;
	}
	if (!exec && optind < argc) {
		fprintf(stderr,
			PROG ": unexpected argument \"%.64s\" (a command goes after --exec)\n",
			argv[optind]);
		return -1;
	}
	if (exec)
		o->command = argv + optind;
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads exactly len bytes of fd into buf (*have already there), waiting no
 * later than deadline_ms (0: no limit). read() is never asked for more than is
 * missing, so the bytes after the header stay in fd for the command. */
static int read_exact(int fd, uint8_t *buf, size_t len, size_t *have, long long deadline_ms,
		      struct errbuf *err)
{
	while (*have < len) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int timeout = -1, n;
		ssize_t r;

		if (deadline_ms > 0) {
			long long left = deadline_ms - now_ms();

			if (left <= 0)
				return errbuf_set(err,
						  "standard input: no complete PROXY header in "
						  "time (%zu bytes of it came)",
						  *have);
			timeout = left > INT_MAX ? INT_MAX : (int)left;
		}
		n = poll(&pfd, 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errbuf_errno(err, errno, "standard input: cannot poll");
		if (n == 0)
			continue;
		r = read(fd, buf + *have, len - *have);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return errbuf_errno(err, errno, "standard input: cannot read");
		if (r == 0)
			return errbuf_set(err,
					  "standard input ended after %zu bytes, within the "
					  "PROXY header",
					  *have);
		*have += (size_t)r;
	}
	return 0;
}

/* The header on fd, in buf (PROXY_V2_MAX bytes), parsed into h. */
static int read_header(int fd, int timeout_s, uint8_t *buf, struct proxy_header *h,
		       struct errbuf *err)
{
	long long deadline = timeout_s > 0 ? now_ms() + (long long)timeout_s * 1000 : 0;
	struct errbuf why;
	size_t have = 0;
	enum proxy_result r;

	/* The fixed part says how long the rest is: two reads, never a byte more. */
	if (read_exact(fd, buf, PROXY_V2_FIXED_LEN, &have, deadline, err) < 0)
		return -1;
	r = proxy_parse(buf, have, PROXY_V2, h, &why);
	if (r == PROXY_NEED_MORE) {
		if (h->length > PROXY_V2_MAX || h->length <= have)
			return errbuf_set(err, "standard input: PROXY header of %zu bytes",
					  h->length);
		if (read_exact(fd, buf, h->length, &have, deadline, err) < 0)
			return -1;
		r = proxy_parse(buf, have, PROXY_V2, h, &why);
	}
	if (r != PROXY_OK)
		return errbuf_set(err, "standard input: %s",
				  r == PROXY_INVALID ? why.msg : "incomplete PROXY header");
	if (h->length != have)
		return errbuf_set(err, "standard input: PROXY header of %zu bytes, %zu read",
				  h->length, have);
	return 0;
}

/* A value for one line of key=value words: bytes other than printable ASCII,
 * spaces, '=' and backslashes as \xNN, so no value can fake another word. */
static void print_value(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '=')
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

/* The client's address without brackets, and its port. */
static void client_address(const struct proxy_header *h, char *addr, size_t len, unsigned *port)
{
	if (h->src.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&h->src;

		inet_ntop(AF_INET, &sin->sin_addr, addr, (socklen_t)len);
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&h->src;

		inet_ntop(AF_INET6, &sin6->sin6_addr, addr, (socklen_t)len);
		*port = ntohs(sin6->sin6_port);
	}
}

static int print_identity(const struct proxy_header *h, const struct proxy_identity *id)
{
	char client[NET_ADDRSTRLEN];

	net_format_addr((const struct sockaddr *)&h->src, client, sizeof(client));
	fputs("user=", stdout);
	print_value(stdout, id->user);
	fputs(" gateway=", stdout);
	print_value(stdout, id->gateway);
	fputs(" target=", stdout);
	print_value(stdout, id->target);
	printf(" client=%s unique_id=", client);
	print_value(stdout, id->unique_id);
	fputc('\n', stdout);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* Sets name to value, or removes it when absent: a value inherited from
 * whoever started us must never pass for the gateway's. */
static int env_set(const char *name, const char *value, bool present)
{
	if (!present)
		return unsetenv(name);
	return setenv(name, value, 1);
}

static int run_command(const struct proxy_header *h, const struct proxy_identity *id,
		       char **command)
{
	char addr[INET6_ADDRSTRLEN], port[8];
	unsigned p;

	client_address(h, addr, sizeof(addr), &p);
	snprintf(port, sizeof(port), "%u", p);
	if (env_set("SOCKGATE_USER", id->user, id->has_user) < 0 ||
	    env_set("SOCKGATE_GATEWAY", id->gateway, id->has_gateway) < 0 ||
	    env_set("SOCKGATE_TARGET", id->target, id->has_target) < 0 ||
	    env_set("SOCKGATE_UNIQUE_ID", id->unique_id, id->has_unique_id) < 0 ||
	    env_set("REMOTE_ADDR", addr, true) < 0 || env_set("REMOTE_PORT", port, true) < 0) {
		fprintf(stderr, PROG ": cannot set the environment: %s\n", strerror(errno));
		return EXIT_FAIL;
	}
	execvp(command[0], command);
	fprintf(stderr, PROG ": cannot run %s: %s\n", command[0], strerror(errno));
	return errno == ENOENT ? EXIT_EXEC_MISSING : EXIT_EXEC_FAILED;
}

int main(int argc, char **argv)
{
	uint8_t key[PROXY_KEY_MAX], buf[PROXY_V2_MAX];
	struct proxy_header h;
	struct proxy_identity id;
	struct options o;
	struct errbuf err;
	enum proxy_verdict v;
	size_t key_len = 0;
	int rc;

	rc = parse_args(argc, argv, &o);
	if (rc != 0)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	/* The key first: a misconfigured backend says so before any client waits. */
	if (proxy_key_load(o.key_path, geteuid(), key, sizeof(key), &key_len, &err) < 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		return EXIT_FAIL;
	}
	if (read_header(STDIN_FILENO, o.timeout_s, buf, &h, &err) < 0) {
		explicit_bzero(key, sizeof(key));
		fprintf(stderr, PROG ": %s\n", err.msg);
		return EXIT_FAIL;
	}
	v = proxy_verify(&h, key, key_len, (uint64_t)time(NULL), o.max_age_s, o.user_tlv, &id,
			 &err);
	explicit_bzero(key, sizeof(key));
	if (v != PROXY_VERIFY_OK) {
		fprintf(stderr, PROG ": refused: %s\n", err.msg);
		return EXIT_FAIL;
	}
	if (o.command == NULL)
		return print_identity(&h, &id);
	return run_command(&h, &id, o.command);
}
