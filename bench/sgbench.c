/* sgbench: the load generator of sockgate's benchmark. Speaks the login
 * exchange when asked, then measures a relay: bulk throughput (one way or
 * both, every byte checked), ping-pong latency, connection and login rates,
 * the memory of idle sessions, and latency under a login storm. Also runs the
 * upstream (serve) and a naive fork-per-connection relay (forkrelay). Results
 * are one JSON line each on stdout, with a readable line on stderr. */
#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "sgb.h"

enum {
	OPT_LOGIN = 0x100,
	OPT_LABEL,
	OPT_WARMUP,
	OPT_BYTES,
	OPT_SIZE,
	OPT_CHUNK,
	OPT_THREADS,
	OPT_CONCURRENCY,
	OPT_PID,
	OPT_RATE,
	OPT_SESSIONS,
	OPT_SETTLE,
	OPT_TIMEOUT,
	OPT_NO_VERIFY,
	OPT_FORK,
	OPT_USER_PROMPT,
	OPT_PASS_PROMPT,
	OPT_SUCCESS,
	OPT_LISTEN,
	OPT_UPSTREAM,
	OPT_SALT,
	OPT_ITERATIONS,
	OPT_RESUME,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sgbench MODE [options]\n"
		"\n"
		"modes against a relay (--target HOST:PORT; --login USER:PASS to log in first):\n"
		"  bulk       one way: the pattern to a checking sink upstream (MB/s)\n"
		"  bulk2      both ways: the pattern to an echo upstream, checked on return\n"
		"  pingpong   --size-byte messages bounced on --conns sessions (RTT p50/p99/p999)\n"
		"  connrate   connect, [login], one --size-byte round trip, close; --concurrency\n"
		"  logins     connect, login, close (needs --login); --concurrency at once\n"
		"  idle       open --sessions sessions, one round trip each, sample --pid's "
		"memory\n"
		"  storm      paced ping-pong on --conns sessions, then again during a login "
		"storm\n"
		"             of --concurrency connections (needs --login)\n"
		"modes against a relay that terminates TLS (the certificate is not verified):\n"
		"  tlsbulk        the pattern through TLS to the checking sink, --conns threads\n"
		"  tlshandshakes  connect, handshake, close on --concurrency threads "
		"(--resume:\n"
		"                 resume a primed TLS 1.3 ticket)\n"
		"  tlsidle        open --sessions TLS sessions, sample --pid's memory\n"
		"servers:\n"
		"  serve      the upstream: --listen HOST:PORT [--threads N | --fork]; echo or\n"
		"             sink per connection, chosen by its first line; --fork: a process\n"
		"             per connection\n"
		"  forkrelay  fork-per-connection relay: --listen HOST:PORT --upstream HOST:PORT\n"
		"other:\n"
		"  hash       --login USER:PASS [--salt PREFIX] [--iterations N]: makes a "
		"crypt(3)\n"
		"             hash and times checking it (one thread)\n"
		"\n"
		"options:\n"
		"  --target HOST:PORT   the relay (or the upstream itself: the direct path)\n"
		"  --login USER:PASS    log in with the username and password prompts first\n"
		"  --label TEXT         copied into the result\n"
		"  --conns N            sessions measured (default 1; storm 10)\n"
		"  --seconds S          measured time (default 3)\n"
		"  --warmup S           unmeasured time first (default 0.5)\n"
		"  --bytes B            bulk: per connection instead of --seconds\n"
		"  --size N             message bytes (default 64)\n"
		"  --chunk N            bulk: bytes per send (default 131072)\n"
		"  --threads N          generator threads (default 1)\n"
		"  --concurrency N      connections being set up at once\n"
		"  --pid PID            the daemon: its CPU time (and descendants') is reported;\n"
		"                       idle samples its memory\n"
		"  --rate R             paced messages per second and session (storm: 100)\n"
		"  --sessions N         idle: sessions held (default 1000)\n"
		"  --settle S           idle: wait before sampling (default 1)\n"
		"  --timeout S          overall limit (default 300)\n"
		"  --no-verify          do not check the bytes (measures the checking's cost)\n"
		"  --resume             tlshandshakes: resumed handshakes, not full ones\n"
		"  --user-prompt TEXT, --pass-prompt TEXT, --success TEXT\n"
		"                       what the login waits for (default \"Username: \",\n"
		"                       \"Password: \", \"You are now logged in.\\n\")\n");
}

static int parse_num(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
		return -1;
	*out = v;
	return 0;
}

static int parse_login(struct sgb_opts *o, const char *arg)
{
	char *colon;

	if (strlen(arg) >= sizeof(o->login_buf))
		return -1;
	strcpy(o->login_buf, arg);
	colon = strchr(o->login_buf, ':');
	if (colon == NULL || colon == o->login_buf)
		return -1;
	*colon = '\0';
	o->login.user = o->login_buf;
	o->login.pass = colon + 1;
	o->login.enabled = true;
	return 0;
}

/* The time of one check of hash with crypt_r, median of o->iterations. */
static int mode_hash(const struct sgb_opts *o)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char salt[CRYPT_GENSALT_OUTPUT_SIZE], hash[CRYPT_OUTPUT_SIZE];
	const char *prefix = o->hash_salt != NULL ? o->hash_salt : "$y$";
	unsigned long cost = 0;
	struct sgb_lat lat = {0};
	struct sgb_json j;
	const char *h;

	if (!o->login.enabled || cd == NULL) {
		fprintf(stderr, "sgbench: hash needs --login USER:PASS\n");
		return 2;
	}
	/* "$2b$04$" style: a prefix with its cost. */
	if (strncmp(prefix, "$2b$", 4) == 0 && prefix[4] != '\0')
		cost = strtoul(prefix + 4, NULL, 10);
	if (crypt_gensalt_rn(cost != 0 ? "$2b$" : prefix, cost, NULL, 0, salt, sizeof(salt)) ==
	    NULL) {
		fprintf(stderr, "sgbench: hash: crypt_gensalt(\"%s\"): %s\n", prefix,
			strerror(errno));
		return 1;
	}
	h = crypt_r(o->login.pass, salt, cd);
	if (h == NULL || h[0] == '*') {
		fprintf(stderr, "sgbench: hash: crypt failed\n");
		return 1;
	}
	snprintf(hash, sizeof(hash), "%s", h);
	for (unsigned i = 0; i < o->iterations; i++) {
		uint64_t t0 = sgb_now_ns();

		h = crypt_r(o->login.pass, hash, cd);
		sgb_lat_add(&lat, sgb_now_ns() - t0);
		if (h == NULL || strcmp(h, hash) != 0) {
			fprintf(stderr, "sgbench: hash: the check failed\n");
			return 1;
		}
	}
	sgb_json_begin(&j, o);
	sgb_json_str(&j, "user", o->login.user);
	sgb_json_str(&j, "hash", hash);
	sgb_json_int(&j, "iterations", o->iterations);
	sgb_lat_report(&lat, &j, "check_");
	sgb_json_bool(&j, "ok", true);
	sgb_json_end(&j);
	fprintf(stderr, "hash %.12s...: one check takes %.2f ms (median of %u)\n", hash,
		sgb_lat_pct_us(&lat, 0.5) / 1000, o->iterations);
	sgb_lat_free(&lat);
	free(cd);
	return 0;
}

/* The generator and its servers may hold tens of thousands of sockets. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"target", required_argument, NULL, 't'},
		{"login", required_argument, NULL, OPT_LOGIN},
		{"label", required_argument, NULL, OPT_LABEL},
		{"conns", required_argument, NULL, 'c'},
		{"seconds", required_argument, NULL, 's'},
		{"warmup", required_argument, NULL, OPT_WARMUP},
		{"bytes", required_argument, NULL, OPT_BYTES},
		{"size", required_argument, NULL, OPT_SIZE},
		{"chunk", required_argument, NULL, OPT_CHUNK},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"concurrency", required_argument, NULL, OPT_CONCURRENCY},
		{"pid", required_argument, NULL, OPT_PID},
		{"rate", required_argument, NULL, OPT_RATE},
		{"sessions", required_argument, NULL, OPT_SESSIONS},
		{"settle", required_argument, NULL, OPT_SETTLE},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"no-verify", no_argument, NULL, OPT_NO_VERIFY},
		{"fork", no_argument, NULL, OPT_FORK},
		{"resume", no_argument, NULL, OPT_RESUME},
		{"user-prompt", required_argument, NULL, OPT_USER_PROMPT},
		{"pass-prompt", required_argument, NULL, OPT_PASS_PROMPT},
		{"success", required_argument, NULL, OPT_SUCCESS},
		{"listen", required_argument, NULL, OPT_LISTEN},
		{"upstream", required_argument, NULL, OPT_UPSTREAM},
		{"salt", required_argument, NULL, OPT_SALT},
		{"iterations", required_argument, NULL, OPT_ITERATIONS},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct sgb_opts o;
	double v;
	bool conns_set = false, conc_set = false, rate_set = false;
	char err[256];
	int c;

	memset(&o, 0, sizeof(o));
	o.conns = 1;
	o.seconds = 3;
	o.warmup = 0.5;
	o.size = 64;
	o.chunk = 128 * 1024;
	o.threads = 1;
	o.sessions = 1000;
	o.settle = 1;
	o.timeout = 300;
	o.verify = true;
	o.iterations = 20;
	o.login.user_prompt = "Username: ";
	o.login.pass_prompt = "Password: ";
	o.login.success = "You are now logged in.\n";
	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
			usage(stdout);
			return 0;
		}
		usage(stderr);
		return 2;
	}
	o.mode = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "t:c:s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			o.target_spec = optarg;
			break;
		case OPT_LOGIN:
			if (parse_login(&o, optarg) < 0) {
				fprintf(stderr, "sgbench: --login wants USER:PASS\n");
				return 2;
			}
			break;
		case OPT_LABEL:
			o.label = optarg;
			break;
		case OPT_USER_PROMPT:
			o.login.user_prompt = optarg;
			break;
		case OPT_PASS_PROMPT:
			o.login.pass_prompt = optarg;
			break;
		case OPT_SUCCESS:
			o.login.success = optarg;
			break;
		case OPT_LISTEN:
			o.listen_spec = optarg;
			break;
		case OPT_UPSTREAM:
			o.upstream_spec = optarg;
			break;
		case OPT_SALT:
			o.hash_salt = optarg;
			break;
		case OPT_NO_VERIFY:
			o.verify = false;
			break;
		case OPT_FORK:
			o.fork = true;
			break;
		case OPT_RESUME:
			o.resume = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case '?':
			usage(stderr);
			return 2;
		default:
			/* The numeric options. */
			if (parse_num(optarg, 0, 1e15, &v) < 0) {
				fprintf(stderr, "sgbench: invalid number \"%s\"\n", optarg);
				return 2;
			}
			switch (c) {
			case 'c':
				o.conns = (unsigned)v;
				conns_set = true;
				break;
			case 's':
				o.seconds = v;
				break;
			case OPT_WARMUP:
				o.warmup = v;
				break;
			case OPT_BYTES:
				o.bytes = (uint64_t)v;
				break;
			case OPT_SIZE:
				o.size = (unsigned)v;
				break;
			case OPT_CHUNK:
				o.chunk = (unsigned)v;
				break;
			case OPT_THREADS:
				o.threads = (unsigned)v;
				break;
			case OPT_CONCURRENCY:
				o.concurrency = (unsigned)v;
				conc_set = true;
				break;
			case OPT_PID:
				o.pid = (pid_t)v;
				break;
			case OPT_RATE:
				o.rate = v;
				rate_set = true;
				break;
			case OPT_SESSIONS:
				o.sessions = (unsigned)v;
				break;
			case OPT_SETTLE:
				o.settle = v;
				break;
			case OPT_TIMEOUT:
				o.timeout = v;
				break;
			case OPT_ITERATIONS:
				o.iterations = (unsigned)v;
				break;
			}
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sgbench: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (o.conns == 0 || o.size == 0 || o.size > 4096 || o.chunk == 0 ||
	    o.chunk > SGB_PATTERN_SPAN || o.seconds <= 0 || o.sessions == 0) {
		fprintf(stderr,
			"sgbench: --conns, --seconds and --sessions must be positive, "
			"--size at most 4096, --chunk at most %u\n",
			SGB_PATTERN_SPAN);
		return 2;
	}
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	sgb_pattern_init();

	if (strcmp(o.mode, "serve") == 0)
		return sgb_mode_serve(&o);
	if (strcmp(o.mode, "forkrelay") == 0)
		return sgb_mode_forkrelay(&o);
	if (strcmp(o.mode, "hash") == 0)
		return mode_hash(&o);

	if (o.target_spec == NULL) {
		fprintf(stderr, "sgbench: %s needs --target HOST:PORT\n", o.mode);
		return 2;
	}
	if (sgb_parse_addr(o.target_spec, 0, &o.target, &o.target_len, err, sizeof(err)) < 0) {
		fprintf(stderr, "sgbench: --target: %s\n", err);
		return 2;
	}
	if (strcmp(o.mode, "bulk") == 0 || strcmp(o.mode, "bulk2") == 0) {
		if (!conc_set)
			o.concurrency = o.conns;
		return sgb_mode_bulk(&o, strcmp(o.mode, "bulk2") == 0);
	}
	if (strcmp(o.mode, "pingpong") == 0) {
		if (!conc_set)
			o.concurrency = o.conns < 64 ? o.conns : 64;
		return sgb_mode_pingpong(&o);
	}
	if (strcmp(o.mode, "connrate") == 0 || strcmp(o.mode, "logins") == 0) {
		bool logins = strcmp(o.mode, "logins") == 0;

		if (logins && !o.login.enabled) {
			fprintf(stderr, "sgbench: logins needs --login USER:PASS\n");
			return 2;
		}
		if (!conc_set)
			o.concurrency = logins ? 32 : 16;
		return sgb_mode_connrate(&o, logins);
	}
	if (strcmp(o.mode, "idle") == 0) {
		if (o.pid <= 0) {
			fprintf(stderr, "sgbench: idle needs --pid PID of the daemon\n");
			return 2;
		}
		if (!conc_set)
			o.concurrency = 64;
		return sgb_mode_idle(&o);
	}
	if (strcmp(o.mode, "storm") == 0) {
		if (!o.login.enabled) {
			fprintf(stderr, "sgbench: storm needs --login USER:PASS\n");
			return 2;
		}
		if (!conns_set)
			o.conns = 10;
		if (!conc_set)
			o.concurrency = 32;
		if (!rate_set)
			o.rate = 100;
		if (o.rate <= 0) {
			fprintf(stderr, "sgbench: storm needs a --rate above 0\n");
			return 2;
		}
		return sgb_mode_storm(&o);
	}
	if (strcmp(o.mode, "tlsbulk") == 0 || strcmp(o.mode, "tlshandshakes") == 0 ||
	    strcmp(o.mode, "tlsidle") == 0) {
		if (strcmp(o.mode, "tlsidle") == 0 && o.pid <= 0) {
			fprintf(stderr, "sgbench: tlsidle needs --pid PID of the relay\n");
			return 2;
		}
		return sgb_mode_tls(&o);
	}
	fprintf(stderr, "sgbench: unknown mode \"%s\"\n", o.mode);
	usage(stderr);
	return 2;
}
