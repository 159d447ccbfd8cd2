/* sockgatectl: asks the running sockgate, over its control socket, who is
 * connected, and ends sessions, lifts penalties, revokes passes, reloads or
 * drains it. One request line out, the daemon's answer printed as it comes
 * (an aligned table, or JSON with --json). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlproto.h"
#include "errbuf.h"

#define PROG           "sockgatectl"
#define DEFAULT_SOCKET "/run/sockgate/control"
#define MAX_ANSWER     (64u << 20)

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [-s SOCKET] [--json] COMMAND\n"
		   "\n"
		   "  status                           the daemon: version, uptime, sessions, ...\n"
		   "  sessions [--gateway G] [--user U] who is connected, to what, since when\n"
		   "  kill ID | kill --user U | kill --source ADDR[/BITS]\n"
		   "                                   end sessions now\n"
		   "  penalties                        sources serving a penalty\n"
		   "  penalties lift ADDR              end one source's penalty\n"
		   "  upstreams                        each upstream address, up or down\n"
		   "  passes                           passes granted (authenticate = \"pass\")\n"
		   "  passes revoke --source ADDR[/BITS] | --user U\n"
		   "  reload                           reload the configuration, with the answer\n"
		   "  drain [--timeout S]              stop accepting; exit when the last session\n"
		   "                                   ends or after S seconds (default 3600)\n"
		   "  restart                          hand the relayed sessions over to a new\n"
		   "                                   process (under systemd's fd store)\n"
		   "\n"
		   "  -s, --socket PATH   the control socket (default " DEFAULT_SOCKET
		   ", or $SOCKGATE_CONTROL)\n"
		   "  -j, --json          answer in JSON\n"
		   "  -h, --help          show this help\n"
		   "  -V, --version       show the version\n");
}

/* Appends " NAME=VALUE" to the request; a value the line cannot carry is a
 * usage error. */
static int arg_add(char *req, size_t cap, const char *name, const char *value)
{
	size_t used = strlen(req);

	for (const char *c = value; *c != '\0'; c++) {
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
			fprintf(stderr,
				PROG ": %s \"%s\": spaces and control characters cannot be "
				     "sent\n",
				name, value);
			return -1;
		}
	}
	if (value[0] == '\0' ||
	    snprintf(req + used, cap - used, " %s=%s", name, value) >= (int)(cap - used)) {
		fprintf(stderr, PROG ": %s: empty or too long\n", name);
		return -1;
	}
	return 0;
}

/* Builds the request line from the command words ("kill --user alice",
 * "penalties lift 192.0.2.7"); -1 on a usage error. */
static int build_request(int argc, char **argv, bool json, char *req, size_t cap)
{
	static const char *const options[][2] = {
		{"--gateway", "gateway"},
		{"--user", "user"},
		{"--source", "source"},
		{"--timeout", "timeout"},
	};
	const char *cmd, *pos = NULL;
	bool sub = false;

	if (argc < 1) {
		usage(stderr);
		return -1;
	}
	cmd = argv[0];
	snprintf(req, cap, "%s%s", cmd, json ? " json" : "");
	for (int i = 1; i < argc; i++) {
		const char *name = NULL;

		for (size_t o = 0; o < sizeof(options) / sizeof(options[0]); o++)
			if (strcmp(argv[i], options[o][0]) == 0)
				name = options[o][1];
		if (name != NULL) {
			if (i + 1 == argc) {
				fprintf(stderr, PROG ": %s needs a value\n", argv[i]);
				return -1;
			}
			if (arg_add(req, cap, name, argv[++i]) < 0)
				return -1;
			continue;
		}
		if (!sub && ((strcmp(cmd, "penalties") == 0 && strcmp(argv[i], "lift") == 0) ||
			     (strcmp(cmd, "passes") == 0 && strcmp(argv[i], "revoke") == 0))) {
			sub = true;
			snprintf(req + strlen(req), cap - strlen(req), " %s", argv[i]);
			continue;
		}
		if (pos != NULL || argv[i][0] == '-') {
			fprintf(stderr, PROG ": unexpected \"%s\"\n", argv[i]);
			return -1;
		}
		pos = argv[i];
	}
	if (pos == NULL)
		return 0;
	if (strcmp(cmd, "kill") == 0)
		return arg_add(req, cap, "id", pos);
	if (sub && strcmp(cmd, "penalties") == 0)
		return arg_add(req, cap, "source", pos);
	fprintf(stderr, PROG ": unexpected \"%s\"\n", pos);
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *path = getenv("SOCKGATE_CONTROL");
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char req[CTL_MAX_REQUEST + 1], *answer = NULL;
	size_t len = 0;
	bool json = false;
	struct ctl_request check;
	struct errbuf err;
	int c, fd;

	if (path == NULL || path[0] == '\0')
		path = DEFAULT_SOCKET;
	while ((c = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf(PROG " %s\n", SOCKGATE_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (build_request(argc - optind, argv + optind, json, req, sizeof(req) - 1) < 0)
		return EXIT_USAGE;
	/* The daemon parses it the same way: a usage error is caught here. */
	if (ctl_parse(req, strlen(req), &check, &err) < 0) {
		fprintf(stderr, PROG ": %s\n", err.msg);
		return EXIT_USAGE;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, PROG ": socket path too long: %s\n", path);
		return EXIT_USAGE;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, PROG ": cannot connect to %s: %s%s\n", path, strerror(errno),
			errno == ENOENT ? " (is sockgate running, with control = { ... }?)" : "");
		return EXIT_FAIL;
	}
	strcat(req, "\n");
	/* A daemon that refuses us answers and closes at once, maybe before the
	 * request is out: then its answer is still there to read. */
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req) && errno != EPIPE &&
	    errno != ECONNRESET) {
		fprintf(stderr, PROG ": cannot send the request: %s\n", strerror(errno));
		return EXIT_FAIL;
	}
	for (;;) {
		char buf[65536], *grown;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (len + (size_t)n > MAX_ANSWER ||
		    (grown = realloc(answer, len + (size_t)n + 1)) == NULL) {
			fprintf(stderr, PROG ": the answer is too large\n");
			return EXIT_FAIL;
		}
		answer = grown;
		memcpy(answer + len, buf, (size_t)n);
		len += (size_t)n;
		answer[len] = '\0';
	}
	close(fd);
	if (answer != NULL && strncmp(answer, "OK ", 3) == 0) {
		/* "OK LENGTH\n", then the body: all of it, or an error. */
		char *end = NULL;
		unsigned long long want = strtoull(answer + 3, &end, 10);
		size_t head = end != NULL && *end == '\n' ? (size_t)(end + 1 - answer) : 0;

		if (head == 0 || len - head != want) {
			fprintf(stderr,
				PROG ": the answer from %s was cut short (%zu of %llu bytes)\n",
				path, head > 0 ? len - head : 0, want);
			free(answer);
			return EXIT_FAIL;
		}
		fwrite(answer + head, 1, len - head, stdout);
		free(answer);
		return EXIT_OK;
	}
	if (answer != NULL && strncmp(answer, "ERROR ", 6) == 0)
		fprintf(stderr, PROG ": %s", answer + 6);
	else
		fprintf(stderr, PROG ": no answer from %s\n", path);
	free(answer);
	return EXIT_FAIL;
}
