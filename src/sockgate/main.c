/* sockgate: the login gateway daemon. Parses the command line and hands over
 * to daemon.c; it runs in the foreground, as systemd expects. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "reload.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sockgate [-t] [-d] [-c FILE]\n"
		"       sockgate --reload PID\n"
		"  -c, --config FILE  configuration file (default %s)\n"
		"  -t, --test         check the configuration and credentials files, then exit\n"
		"  -d, --debug        log debugging messages too\n"
		"      --reload PID   make the running daemon PID reload, and wait until it has\n"
		"                     (exit 0: new configuration in use, 1: rejected)\n"
		"  -h, --help         show this help\n"
		"  -V, --version      show the version\n",
		CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"test", no_argument, NULL, 't'},
		{"debug", no_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"reload", required_argument, NULL, 'R'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = CONFIG_DEFAULT_PATH;
	int test = 0, debug = 0, c;

	while ((c = getopt_long(argc, argv, "c:tdhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'd':
			debug = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'R': {
			char *end;
			long pid = strtol(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || pid <= 1 || pid > INT32_MAX) {
				fprintf(stderr,
					"sockgate: --reload wants the daemon's process id, not "
					"\"%s\"\n",
					optarg);
				return 2;
			}
			return reload_request((pid_t)pid, 90000);
		}
		case 'V':
			printf("sockgate %s\n", SOCKGATE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "sockgate: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (test)
		return daemon_check(config_path);
	log_init("sockgate", debug ? LOG_DEBUG : LOG_INFO);
	return daemon_run(config_path);
}
