/* test_config: the configuration loader as a specification. One table row per
 * rule (text in, "loads" or "fails with this FILE:LINE message" out), then
 * value checks for what a good file turns into, the file-level checks, and
 * allocation failures injected through -Wl,--wrap (see config_tests.cmake). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testmain.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define NAME "/srv/sockgate/test.conf"

/* Rows are built from these so the line numbers in expected messages are
 * easy to count: GW_OPEN is line 1, GW_BASE line 2, the row's own text line 3. */
#define GW_OPEN  "gateways = ( {\n"
#define GW_BASE  "name = \"g\"; upstream = \"127.0.0.1:8080\"; credentials = \"users\";\n"
#define GW_CLOSE "} );\n"
#define GW(body) GW_OPEN GW_BASE body GW_CLOSE

/* The example from the specification, verbatim. */
static const char example[] =
	"gateways = (\n"
	"  {\n"
	"    name = \"demo\";\n"
	"    listen = ( \"127.0.0.1:2323\", \"[::1]:2323\" );\n"
	"    upstream = ( \"127.0.0.1:8080\" );        # tried in order until one connects\n"
	"    credentials = \"/etc/sockgate/users\";\n"
	"    login = {\n"
	"      username_prompt = \"Username: \";\n"
	"      password_prompt = \"Password: \";\n"
	"      success_message = \"Username and password are correct.\\nYou are now logged "
	"in.\\n\";\n"
	"      failure_message = \"Username or password is incorrect.\\n\";\n"
	"      max_attempts = 3;\n"
	"      grace_time = 30;                      # seconds to complete the login\n"
	"    };\n"
	"    timeouts = { connect = 5; idle = 0; };  # seconds; 0 means none\n"
	"    max_sessions = 1000;\n"
	"  }\n"
	");\n";

struct config_case {
	const char *desc;
	const char *text;
	const char *error; /* NULL: loads; else a substring of the message */
};

static const struct config_case cases[] = {
	/* What loads. */
	{"the example", example, NULL},
	{"only the required settings", GW(""), NULL},
	{"single-string listen", GW("listen = \"127.0.0.1:0\";\n"), NULL},
	{"listen as an array", GW("listen = [ \"127.0.0.1:0\", \"[::1]:0\" ];\n"), NULL},
	{"no listen at all (socket activation)", GW("listen = ();\n"), NULL},
	{"*:PORT listen", GW("listen = \"*:2323\";\n"), NULL},
	{"listen by name", GW("listen = \"localhost:0\";\n"), NULL},
	{"port 0 twice: each gets its own port",
	 GW("listen = ( \"127.0.0.1:0\", \"127.0.0.1:0\" );\n"), NULL},
	{"same port, different families", GW("listen = ( \"0.0.0.0:2323\", \"[::]:2323\" );\n"),
	 NULL},
	{"upstream by name",
	 GW_OPEN "name = \"g\"; upstream = \"localhost:80\";\n"
		 "credentials = \"u\";\n" GW_CLOSE,
	 NULL},
	{"float timeouts", GW("timeouts = { connect = 0.5; idle = 1.25; };\n"), NULL},
	{"64-bit integer literal", GW("max_sessions = 5L;\n"), NULL},
	{"hexadecimal literal", GW("max_sessions = 0x10;\n"), NULL},
	{"workers auto", "workers = \"auto\";\nauth_threads = \"auto\";\n" GW(""), NULL},
	{"workers 0 means auto", "workers = 0;\nauth_threads = 0;\n" GW(""), NULL},
	{"workers at the bounds", "workers = 256;\nauth_threads = 64;\n" GW(""), NULL},
	{"auth_threads_relaying", "auth_threads_relaying = \"auto\";\n" GW(""), NULL},
	{"empty messages", GW("login = { success_message = \"\"; failure_message = \"\"; };\n"),
	 NULL},
	{"numbers in strings and comments are not checked",
	 GW("# max_sessions = 99999999999\n"
	    "login = { username_prompt = \"99999999999 \"; }; /* 88888888888 */\n"),
	 NULL},
	{"libconfig comment styles", "// c++\n/* c\n */\n# sh\n" GW(""), NULL},
	{"a plain relay needs no credentials",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\"; authenticate = false;\n" GW_CLOSE,
	 NULL},
	{"relay buffer", "relay_buffer = 65536;\n" GW(""), NULL},
	{"relay buffer too small", "relay_buffer = 100;\n" GW(""),
	 NAME ":1: relay_buffer: 100 is out of range 4096..16777216"},
	{"the defences, all set",
	 "revoke_on_reload = true;\n"
	 "limits = { auth_queue = 10; startups = { begin = 1; rate = 0; full = 1; };"
	 " per_source_startups = 5; };\n"
	 "penalties = { enabled = false; authfail = 0.5; grace_exceeded = 1; min = 2; max = 60;"
	 " ipv4_netblock = 32; ipv6_netblock = 128; max_sources = 16;"
	 " exempt = ( \"10.0.0.0/8\", \"::1\" ); };\n" GW("login = { failure_delay = 0; };\n"),
	 NULL},

	/* The defences' settings. */
	{"startups full below begin",
	 "limits = { startups = { begin = 10; full = 5; }; };\n" GW(""),
	 NAME ":1: limits: startups: full (5) is below begin (10)"},
	{"bad exempt block", "penalties = { exempt = \"10.0.0.0/33\"; };\n" GW(""),
	 NAME ":1: penalties.exempt: \"10.0.0.0/33\": the prefix length must be 0..32"},
	{"exempt by name", "penalties = { exempt = ( \"localhost\" ); };\n" GW(""),
	 NAME ":1: penalties.exempt.[0]: \"localhost\": \"localhost\" is not a numeric"},
	{"penalty cap below its threshold", "penalties = { min = 20; max = 10; };\n" GW(""),
	 NAME ":1: penalties: max (10000 ms) is below min (20000 ms)"},
	{"boolean as a number", "penalties = { enabled = 1; };\n" GW(""),
	 NAME ":1: penalties.enabled: must be true or false, not an integer"},
	{"netblock out of range", "penalties = { ipv4_netblock = 0; };\n" GW(""),
	 NAME ":1: penalties.ipv4_netblock: 0 is out of range 1..32"},

	/* Syntax, as libconfig reports it. */
	{"syntax error", "workers = 2;\nauth_threads = ;\n" GW(""), NAME ":2: syntax error"},
	{"unterminated group", GW_OPEN GW_BASE, NAME ":3: syntax error"},
	{"duplicate setting", GW("max_sessions = 1;\nmax_sessions = 2;\n"),
	 NAME ":4: duplicate setting name"},
	{"@include", "@include \"other.conf\"\n" GW(""), NAME ":1: @include is not supported"},

	/* Unknown settings, at every level. */
	{"unknown top-level setting", "wokers = 2;\n" GW(""),
	 NAME ":1: wokers: unknown setting; did you mean 'workers'?"},
	{"unknown gateway setting", GW("logn = { };\n"),
	 NAME ":3: gateways.[0].logn: unknown setting; did you mean 'login'?"},
	{"unknown login setting", GW("login = { tries = 3; };\n"),
	 NAME ":3: gateways.[0].login.tries: unknown setting; known here: username_prompt, "},
	{"unknown timeouts setting", GW("timeouts = { conect = 3; };\n"),
	 NAME ":3: gateways.[0].timeouts.conect: unknown setting; did you mean 'connect'?"},
	{"settings are case-sensitive", GW("Max_Sessions = 3;\n"),
	 NAME ":3: gateways.[0].Max_Sessions: unknown setting; did you mean 'max_sessions'?"},

	/* Wrong types. */
	{"string for an integer", GW("max_sessions = \"10\";\n"),
	 NAME ":3: gateways.[0].max_sessions: must be an integer 1..1000000, not a string"},
	{"float for an integer", GW("login = { max_attempts = 2.5; };\n"),
	 NAME ":3: gateways.[0].login.max_attempts: must be an integer 1..100"},
	{"integer for a string", GW_OPEN "name = 5;\n" GW_CLOSE,
	 NAME ":2: gateways.[0].name: must be a string, not an integer"},
	{"list for a prompt", GW("login = { username_prompt = ( \"a\" ); };\n"),
	 NAME ":3: gateways.[0].login.username_prompt: must be a string, not a list"},
	{"string for a duration", GW("login = { grace_time = \"30s\"; };\n"),
	 NAME ":3: gateways.[0].login.grace_time: must be a number of seconds 0..3600"},
	{"integer for a group", GW("login = 5;\n"),
	 NAME ":3: gateways.[0].login: must be a group { ... }, not an integer"},
	{"group for gateways", "gateways = { name = \"g\"; };\n",
	 NAME ":1: gateways: must be a list of groups"},
	{"string in gateways", "gateways = ( \"g\" );\n",
	 NAME ":1: gateways.[0]: must be a group { ... }, not a string"},
	{"boolean for upstream",
	 GW_OPEN "name = \"g\"; upstream = true; credentials = \"u\";\n" GW_CLOSE,
	 NAME ":2: gateways.[0].upstream: must be a string \"HOST:PORT\" or a list"},
	{"integer in listen", GW("listen = ( \"127.0.0.1:1\", 2 );\n"),
	 NAME ":3: gateways.[0].listen.[1]: must be a string \"HOST:PORT\", not an integer"},
	{"bad workers string", "workers = \"many\";\n" GW(""),
	 NAME ":1: workers: must be \"auto\" or an integer 1..256, not \"many\""},
	{"boolean for workers", "workers = true;\n" GW(""),
	 NAME ":1: workers: must be \"auto\" or an integer 1..256, not a boolean"},

	/* Out of range. */
	{"max_attempts 0", GW("login = { max_attempts = 0; };\n"),
	 NAME ":3: gateways.[0].login.max_attempts: 0 is out of range 1..100"},
	{"max_attempts 101", GW("login = { max_attempts = 101; };\n"),
	 NAME ":3: gateways.[0].login.max_attempts: 101 is out of range 1..100"},
	{"max_sessions 0", GW("max_sessions = 0;\n"),
	 NAME ":3: gateways.[0].max_sessions: 0 is out of range 1..1000000"},
	{"negative max_sessions", GW("max_sessions = -1;\n"),
	 NAME ":3: gateways.[0].max_sessions: -1 is out of range 1..1000000"},
	{"max_sessions above 32 bits", GW("max_sessions = 4294967297;\n"),
	 NAME ":3: max_sessions: 4294967297 is too large for an integer"},
	{"hexadecimal above 31 bits", GW("max_sessions = 0x100000001;\n"),
	 NAME ":3: max_sessions: 0x100000001 is too large for an integer"},
	{"64-bit literal out of range", GW("max_sessions = 4294967297L;\n"),
	 NAME ":3: gateways.[0].max_sessions: 4294967297 is out of range 1..1000000"},
	{"grace_time too long", GW("login = { grace_time = 3601; };\n"),
	 NAME ":3: gateways.[0].login.grace_time: 3601 is out of range 0..3600 seconds"},
	{"negative grace_time", GW("login = { grace_time = -1; };\n"),
	 NAME ":3: gateways.[0].login.grace_time: -1 is out of range 0..3600 seconds"},
	{"fractional connect out of range", GW("timeouts = { connect = 3600.5; };\n"),
	 NAME ":3: gateways.[0].timeouts.connect: 3600.5 is out of range 0..3600 seconds"},
	{"idle above a year", GW("timeouts = { idle = 31536001; };\n"),
	 NAME ":3: gateways.[0].timeouts.idle: 31536001 is out of range 0..31536000 seconds"},
	{"infinite timeout", GW("timeouts = { idle = 1e400; };\n"),
	 NAME ":3: gateways.[0].timeouts.idle: inf is out of range"},
	{"below a millisecond", GW("login = { grace_time = 0.0001; };\n"),
	 NAME ":3: gateways.[0].login.grace_time: 0.0001 seconds is below the resolution"},
	{"workers 257", "workers = 257;\n" GW(""),
	 NAME ":1: workers: 257 is out of range 1..256 (or 0 or \"auto\")"},
	{"negative workers", "workers = -1;\n" GW(""),
	 NAME ":1: workers: -1 is out of range 1..256"},
	{"auth_threads 65", "auth_threads = 65;\n" GW(""),
	 NAME ":1: auth_threads: 65 is out of range 1..64"},
	{"auth_threads_relaying 65", "auth_threads = 2;\nauth_threads_relaying = 65;\n" GW(""),
	 NAME ":2: auth_threads_relaying: 65 is out of range 1..64"},

	/* Required settings. */
	{"missing upstream", GW_OPEN "name = \"g\"; credentials = \"u\";\n" GW_CLOSE,
	 NAME ":1: gateways.[0]: missing required setting 'upstream'"},
	{"empty upstream list",
	 GW_OPEN "name = \"g\"; credentials = \"u\";\nupstream = ();\n" GW_CLOSE,
	 NAME ":3: gateways.[0].upstream: is empty; at least 1 address is required"},
	{"missing credentials", GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\";\n" GW_CLOSE,
	 NAME ":1: gateways.[0]: missing required setting 'credentials' (a file name); or "
	      "auth = \"pam\"; or authenticate = false;"},
	/* Where the users come from, and the second factor. */
	{"pam and a credentials file",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\"; auth = \"pam\";\n"
		 "credentials = \"u\";\n" GW_CLOSE,
	 NAME ":3: gateways.[0].credentials: a gateway with auth = \"pam\" takes its users "
	      "from PAM"},
	{"pam with totp",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\"; auth = \"pam\";\n"
		 "login = { second_factor = \"totp\"; };\n" GW_CLOSE,
	 NAME ":1: gateways.[0]: login.second_factor applies to the credentials file"},
	{"pam service as a path",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\"; auth = \"pam\";\n"
		 "pam_service = \"../x\";\n" GW_CLOSE,
	 NAME ":3: gateways.[0].pam_service: pam_service is a service name, not a path"},
	{"unknown auth",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\"; auth = \"ldap\";\n" GW_CLOSE,
	 NAME ":2: gateways.[0].auth: "},
	{"unknown second factor",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\"; credentials = \"u\";\n"
		 "login = { second_factor = \"sms\"; };\n" GW_CLOSE,
	 NAME ":3: gateways.[0].login.second_factor: "},
	{"totp window too wide",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\"; credentials = \"u\";\n"
		 "login = { totp_window = 11; };\n" GW_CLOSE,
	 NAME ":3: gateways.[0].login.totp_window: "},
	{"empty credentials",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\";\n"
		 "credentials = \"\";\n" GW_CLOSE,
	 NAME ":3: gateways.[0].credentials: must not be empty"},
	{"missing name", GW_OPEN "upstream = \"127.0.0.1:1\"; credentials = \"u\";\n" GW_CLOSE,
	 NAME ":1: gateways.[0]: missing required setting 'name'"},
	{"no gateways", "gateways = ();\n",
	 NAME ":1: gateways: is empty; at least 1 entry is required"},
	{"no gateways setting", "workers = 1;\n", NAME ":1: missing required setting 'gateways'"},
	{"empty file", "", NAME ":1: missing required setting 'gateways'"},

	/* Gateway names. */
	{"duplicate name",
	 "gateways = (\n"
	 "{ name = \"a\"; upstream = \"127.0.0.1:1\"; credentials = \"u\"; },\n"
	 "{ name = \"a\"; upstream = \"127.0.0.1:2\"; credentials = \"u\"; }\n"
	 ");\n",
	 NAME ":3: gateways.[1].name: \"a\" is already the name of the gateway at line 2"},
	{"space in name", GW_OPEN "name = \"de mo\";\n" GW_CLOSE,
	 NAME ":2: gateways.[0].name: \"de mo\" has a character (0x20) that is not allowed"},
	{"slash in name", GW_OPEN "name = \"a/b\";\n" GW_CLOSE,
	 NAME ":2: gateways.[0].name: \"a/b\" has a character (0x2f)"},
	{"empty name", GW_OPEN "name = \"\";\n" GW_CLOSE,
	 NAME ":2: gateways.[0].name: must not be empty"},
	{"name too long",
	 GW_OPEN "name = \"" /* 65 characters */
		 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm\";\n" GW_CLOSE,
	 NAME ":2: gateways.[0].name: is 65 bytes long; 1..64 allowed"},

	/* Addresses. */
	{"listen clash across gateways",
	 "gateways = (\n"
	 "{ name = \"a\"; listen = \"127.0.0.1:2323\"; upstream = \"127.0.0.1:1\";"
	 " credentials = \"u\"; },\n"
	 "{ name = \"b\"; upstream = \"127.0.0.1:1\"; credentials = \"u\";\n"
	 "  listen = ( \"[::1]:2323\",\n"
	 "             \"127.0.0.1:2323\" ); }\n"
	 ");\n",
	 NAME ":5: gateways.[1].listen.[1]: 127.0.0.1:2323 (\"127.0.0.1:2323\") clashes with "
	      "127.0.0.1:2323 (\"127.0.0.1:2323\") of gateway \"a\" (line 2)"},
	{"listen clash after resolution",
	 "gateways = (\n"
	 "{ name = \"a\"; listen = \"127.0.0.1:2323\"; upstream = \"127.0.0.1:1\";"
	 " credentials = \"u\"; },\n"
	 "{ name = \"b\"; listen = \"localhost:2323\"; upstream = \"127.0.0.1:1\";"
	 " credentials = \"u\"; }\n"
	 ");\n",
	 NAME ":3: gateways.[1].listen: 127.0.0.1:2323 (\"localhost:2323\") clashes with"},
	{"listen clash with a wildcard",
	 "gateways = (\n"
	 "{ name = \"a\"; listen = \"*:2323\"; upstream = \"127.0.0.1:1\"; credentials = \"u\"; "
	 "},\n"
	 "{ name = \"b\"; listen = \"127.0.0.1:2323\"; upstream = \"127.0.0.1:1\";"
	 " credentials = \"u\"; }\n"
	 ");\n",
	 NAME ":3: gateways.[1].listen: 127.0.0.1:2323 (\"127.0.0.1:2323\") clashes with "
	      "0.0.0.0:2323 (\"*:2323\") of gateway \"a\""},
	{"listen clash within a gateway",
	 GW("listen = ( \"127.0.0.1:2323\", \"127.0.0.1:2323\" );\n"),
	 NAME ":3: gateways.[0].listen.[0]: 127.0.0.1:2323 (\"127.0.0.1:2323\") clashes with "
	      "127.0.0.1:2323 (\"127.0.0.1:2323\") listed before"},
	{"unbracketed IPv6", GW("listen = \"::1:80\";\n"),
	 NAME ":3: gateways.[0].listen: \"::1:80\": an IPv6 address needs brackets"},
	{"no port", GW("listen = \"127.0.0.1\";\n"),
	 NAME ":3: gateways.[0].listen: \"127.0.0.1\": expected HOST:PORT"},
	{"port out of range", GW("listen = \"127.0.0.1:65536\";\n"),
	 NAME ":3: gateways.[0].listen: \"127.0.0.1:65536\": port 65536 is out of range"},
	{"upstream port 0",
	 GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:0\"; credentials = \"u\";\n" GW_CLOSE,
	 NAME ":2: gateways.[0].upstream: \"127.0.0.1:0\": port 0 is not allowed here"},
	{"upstream wildcard",
	 GW_OPEN "name = \"g\"; upstream = \"*:80\"; credentials = \"u\";\n" GW_CLOSE,
	 NAME ":2: gateways.[0].upstream: \"*:80\": '*' (any address) is only for listen"},
	{"unresolvable upstream",
	 GW_OPEN "name = \"g\"; credentials = \"u\";\n"
		 "upstream = ( \"127.0.0.1:1\", \"no-such-host.invalid:80\" );\n" GW_CLOSE,
	 NAME ":3: gateways.[0].upstream.[1]: cannot resolve \"no-such-host.invalid\""},

	/* Texts. */
	{"empty username prompt", GW("login = { username_prompt = \"\"; };\n"),
	 NAME ":3: gateways.[0].login.username_prompt: must not be empty"},
	{"empty password prompt", GW("login = {\npassword_prompt = \"\"; };\n"),
	 NAME ":4: gateways.[0].login.password_prompt: must not be empty"},
};

static int group_setup(void **state)
{
	/* Every row expects relative paths to follow the file, not systemd. */
	unsetenv("CREDENTIALS_DIRECTORY");
	return 0;
}

/* "FILE:LINE: " with a positive decimal LINE. */
static int has_file_line(const char *msg, const char *file)
{
	size_t n = strlen(file);
	const char *p = msg + n;

	if (strncmp(msg, file, n) != 0 || *p != ':' || p[1] < '1' || p[1] > '9')
		return 0;
	for (p++; *p >= '0' && *p <= '9'; p++)
		;
	return p[0] == ':' && p[1] == ' ';
}

static void test_table(void **state)
{
	int failures = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct config_case *c = &cases[i];
		struct errbuf err = {""};
		struct config *cfg = config_parse(NAME, c->text, &err);

		if (c->error == NULL && cfg == NULL) {
			print_error("row \"%s\": expected to load, got: %s\n", c->desc, err.msg);
			failures++;
		} else if (c->error != NULL && cfg != NULL) {
			print_error("row \"%s\": loaded, expected: %s\n", c->desc, c->error);
			failures++;
		} else if (c->error != NULL && strstr(err.msg, c->error) == NULL) {
			print_error("row \"%s\":\n  expected: %s\n  got:      %s\n", c->desc,
				    c->error, err.msg);
			failures++;
		} else if (c->error != NULL && !has_file_line(err.msg, NAME)) {
			print_error("row \"%s\": no FILE:LINE prefix: %s\n", c->desc, err.msg);
			failures++;
		}
		config_unref(cfg);
	}
	assert_int_equal(failures, 0);
}

static struct config *must_parse(const char *name, const char *text)
{
	struct errbuf err = {""};
	struct config *cfg = config_parse(name, text, &err);

	if (cfg == NULL)
		fail_msg("%s", err.msg);
	return cfg;
}

static void test_example_values(void **state)
{
	struct config *cfg = must_parse(NAME, example);
	const struct config_gateway *gw;

	assert_int_equal(cfg->refs, 1);
	assert_string_equal(cfg->path, NAME);
	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->auth_threads, 0);
	assert_int_equal(cfg->n_gateways, 1);
	gw = &cfg->gateways[0];
	assert_ptr_equal(config_find_gateway(cfg, "demo"), gw);
	assert_string_equal(gw->name, "demo");
	assert_int_equal(gw->line, 2);
	assert_int_equal(gw->n_listen, 2);
	assert_string_equal(gw->listen[0].text, "127.0.0.1:2323");
	assert_string_equal(gw->listen[0].resolved, "127.0.0.1:2323");
	assert_int_equal(gw->listen[0].ss.ss_family, AF_INET);
	assert_int_equal(gw->listen[0].len, sizeof(struct sockaddr_in));
	assert_string_equal(gw->listen[1].text, "[::1]:2323");
	assert_string_equal(gw->listen[1].resolved, "[::1]:2323");
	assert_int_equal(gw->listen[1].ss.ss_family, AF_INET6);
	assert_int_equal(gw->n_upstream, 1);
	assert_string_equal(gw->upstream[0].text, "127.0.0.1:8080");
	assert_string_equal(gw->upstream[0].resolved, "127.0.0.1:8080");
	assert_string_equal(gw->credentials, "/etc/sockgate/users");
	assert_string_equal(gw->credentials_path, "/etc/sockgate/users");
	assert_string_equal(gw->login.username_prompt, "Username: ");
	assert_string_equal(gw->login.password_prompt, "Password: ");
	assert_string_equal(gw->login.success_message,
			    "Username and password are correct.\nYou are now logged in.\n");
	assert_string_equal(gw->login.failure_message, "Username or password is incorrect.\n");
	assert_int_equal(gw->login.max_attempts, 3);
	assert_int_equal(gw->login.grace_time_ms, 30000);
	assert_int_equal(gw->connect_timeout_ms, 5000);
	assert_int_equal(gw->idle_timeout_ms, 0);
	assert_int_equal(gw->max_sessions, 1000);
	config_unref(cfg);
}

static void test_defaults(void **state)
{
	struct config *cfg = must_parse(NAME, GW(""));
	const struct config_gateway *gw = &cfg->gateways[0];

	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->auth_threads, 0);
	assert_int_equal(gw->line, 1);
	assert_int_equal(gw->n_listen, 0);
	assert_null(gw->listen);
	assert_string_equal(gw->login.username_prompt, "Username: ");
	assert_string_equal(gw->login.password_prompt, "Password: ");
	assert_string_equal(gw->login.success_message,
			    "Username and password are correct.\nYou are now logged in.\n");
	assert_string_equal(gw->login.failure_message, "Username or password is incorrect.\n");
	assert_int_equal(gw->login.max_attempts, 3);
	assert_int_equal(gw->login.grace_time_ms, 30000);
	assert_int_equal(gw->connect_timeout_ms, 5000);
	assert_int_equal(gw->idle_timeout_ms, 0);
	assert_int_equal(gw->max_sessions, 9000);
	assert_int_equal(gw->login.max_empty_lines, 5);
	/* The safe defaults (hostile clients): one source gets a small share of
	 * the logins under way, the start-up limits engage before max_sessions,
	 * and a connection that ends without an attempt costs its source. */
	assert_int_equal(cfg->limits.per_source_startups, 10);
	assert_int_equal(cfg->limits.startups_begin, 6000);
	assert_int_equal(cfg->limits.startups_full, 8000);
	assert_true(cfg->limits.startups_full <= gw->max_sessions);
	assert_true(cfg->penalties.enabled);
	assert_int_equal(cfg->penalties.noauth_ms, 1000);
	assert_int_equal(cfg->penalties.ipv4_bits, 32);
	assert_int_equal(cfg->penalties.ipv6_bits, 64);
	config_unref(cfg);
}

static void test_multiple_gateways(void **state)
{
	struct config *cfg =
		must_parse(NAME, "workers = 4;\n"
				 "auth_threads = 2;\n"
				 "auth_threads_relaying = 1;\n"
				 "gateways = (\n"
				 "  { name = \"first\"; listen = \"127.0.0.1:2323\";\n"
				 "    upstream = ( \"127.0.0.1:1\", \"[::1]:2\" );\n"
				 "    credentials = \"a\"; max_sessions = 7; },\n"
				 "  { name = \"second-gw_2.x\"; listen = \"127.0.0.1:2324\";\n"
				 "    upstream = \"127.0.0.1:3\"; credentials = \"b\";\n"
				 "    login = { max_attempts = 1; }; }\n"
				 ");\n");

	assert_int_equal(cfg->workers, 4);
	assert_int_equal(cfg->auth_threads, 2);
	assert_int_equal(cfg->auth_threads_relaying, 1);
	assert_int_equal(cfg->n_gateways, 2);
	assert_ptr_equal(config_find_gateway(cfg, "first"), &cfg->gateways[0]);
	assert_ptr_equal(config_find_gateway(cfg, "second-gw_2.x"), &cfg->gateways[1]);
	assert_null(config_find_gateway(cfg, "third"));
	assert_null(config_find_gateway(cfg, "firs"));
	assert_int_equal(cfg->gateways[0].line, 5);
	assert_int_equal(cfg->gateways[1].line, 8);
	/* Upstreams keep the order they were written in. */
	assert_int_equal(cfg->gateways[0].n_upstream, 2);
	assert_string_equal(cfg->gateways[0].upstream[0].resolved, "127.0.0.1:1");
	assert_string_equal(cfg->gateways[0].upstream[1].resolved, "[::1]:2");
	assert_int_equal(cfg->gateways[0].max_sessions, 7);
	assert_int_equal(cfg->gateways[0].login.max_attempts, 3);
	assert_int_equal(cfg->gateways[1].max_sessions, 9000);
	assert_int_equal(cfg->gateways[1].login.max_attempts, 1);
	assert_string_equal(cfg->gateways[1].listen[0].resolved, "127.0.0.1:2324");
	config_unref(cfg);
}

static void test_single_string_listen(void **state)
{
	struct config *cfg = must_parse(NAME, GW("listen = \"[::1]:0\";\n"));

	assert_int_equal(cfg->gateways[0].n_listen, 1);
	assert_string_equal(cfg->gateways[0].listen[0].text, "[::1]:0");
	assert_string_equal(cfg->gateways[0].listen[0].resolved, "[::1]:0");
	config_unref(cfg);
}

/* "*:PORT" is one spec but two sockets: one per family. */
static void test_wildcard_listen(void **state)
{
	struct config *cfg = must_parse(NAME, GW("listen = \"*:2323\";\n"));
	const struct config_gateway *gw = &cfg->gateways[0];
	int v4 = 0, v6 = 0;

	assert_int_equal(gw->n_listen, 2);
	for (size_t i = 0; i < gw->n_listen; i++) {
		assert_string_equal(gw->listen[i].text, "*:2323");
		v4 += strcmp(gw->listen[i].resolved, "0.0.0.0:2323") == 0;
		v6 += strcmp(gw->listen[i].resolved, "[::]:2323") == 0;
	}
	assert_int_equal(v4, 1);
	assert_int_equal(v6, 1);
	config_unref(cfg);
}

static void test_durations(void **state)
{
	struct config *cfg =
		must_parse(NAME, GW("login = { grace_time = 0.25; };\n"
				    "timeouts = { connect = 1.5; idle = 31536000; };\n"));
	const struct config_gateway *gw = &cfg->gateways[0];

	assert_int_equal(gw->login.grace_time_ms, 250);
	assert_int_equal(gw->connect_timeout_ms, 1500);
	/* A year in ms needs the 64-bit field. */
	assert_true(gw->idle_timeout_ms == 31536000000ULL);
	config_unref(cfg);

	cfg = must_parse(NAME, GW("login = { grace_time = 0; };\n"
				  "timeouts = { connect = 0.001; idle = 0.0015; };\n"));
	gw = &cfg->gateways[0];
	assert_int_equal(gw->login.grace_time_ms, 0);
	assert_int_equal(gw->connect_timeout_ms, 1);
	assert_int_equal(gw->idle_timeout_ms, 2);
	config_unref(cfg);
}

static void test_workers(void **state)
{
	struct config *cfg = must_parse(NAME, "workers = \"auto\";\nauth_threads = 3;\n" GW(""));

	assert_int_equal(cfg->workers, 0);
	assert_int_equal(cfg->auth_threads, 3);
	config_unref(cfg);
	cfg = must_parse(NAME, "workers = 256;\nauth_threads = \"auto\";\n" GW(""));
	assert_int_equal(cfg->workers, 256);
	assert_int_equal(cfg->auth_threads, 0);
	config_unref(cfg);
}

/* A message of exactly CONFIG_MAX_TEXT bytes loads; one more byte does not. */
static void test_message_length(void **state)
{
	static const char head[] = GW_OPEN GW_BASE "login = { success_message = \"";
	static const char tail[] = "\"; };\n" GW_CLOSE;
	size_t len = sizeof(head) + CONFIG_MAX_TEXT + 1 + sizeof(tail);
	char *text = malloc(len);
	struct errbuf err = {""};
	struct config *cfg;

	assert_non_null(text);
	snprintf(text, len, "%s%*s%s", head, CONFIG_MAX_TEXT, "", tail);
	cfg = must_parse(NAME, text);
	assert_int_equal(strlen(cfg->gateways[0].login.success_message), CONFIG_MAX_TEXT);
	config_unref(cfg);

	snprintf(text, len, "%s%*s%s", head, CONFIG_MAX_TEXT + 1, "", tail);
	assert_null(config_parse(NAME, text, &err));
	assert_string_equal(err.msg, NAME ":3: gateways.[0].login.success_message: "
					  "is 1025 bytes long; 0..1024 allowed");
	free(text);
}

static void test_credentials_relative(void **state)
{
	struct config *cfg;
	char *cwd, want[PATH_MAX + 16];

	/* Next to the configuration file... */
	cfg = must_parse(NAME, GW(""));
	assert_string_equal(cfg->gateways[0].credentials, "users");
	assert_string_equal(cfg->gateways[0].credentials_path, "/srv/sockgate/users");
	config_unref(cfg);

	/* ...or, for a bare name, the working directory at load time... */
	cwd = getcwd(NULL, 0);
	assert_non_null(cwd);
	snprintf(want, sizeof(want), "%s/users", strcmp(cwd, "/") == 0 ? "" : cwd);
	cfg = must_parse("test.conf", GW(""));
	assert_string_equal(cfg->gateways[0].credentials_path, want);
	config_unref(cfg);
	free(cwd);

	/* ...unless systemd's LoadCredential= provides it. */
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "/run/credentials/sockgate.service", 1),
			 0);
	cfg = must_parse(NAME, GW(""));
	assert_string_equal(cfg->gateways[0].credentials, "users");
	assert_string_equal(cfg->gateways[0].credentials_path,
			    "/run/credentials/sockgate.service/users");
	config_unref(cfg);

	/* An absolute path is taken as written either way. */
	cfg = must_parse(NAME, GW_OPEN "name = \"g\"; upstream = \"127.0.0.1:1\";\n"
				       "credentials = \"/etc/sockgate/users\";\n" GW_CLOSE);
	assert_string_equal(cfg->gateways[0].credentials_path, "/etc/sockgate/users");
	config_unref(cfg);
	unsetenv("CREDENTIALS_DIRECTORY");
}

static void test_refcount(void **state)
{
	struct config *cfg = must_parse(NAME, GW(""));

	assert_ptr_equal(config_ref(cfg), cfg);
	assert_int_equal(cfg->refs, 2);
	config_unref(cfg);
	assert_int_equal(cfg->refs, 1);
	config_unref(cfg); /* frees: ASan's leak check sees it */
	config_unref(NULL);
	assert_null(config_ref(NULL));
}

/* ---- files ---- */

struct tmpdir {
	char path[64];
};

static int file_setup(void **state)
{
	struct tmpdir *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return -1;
	snprintf(t->path, sizeof(t->path), "/tmp/test_config.XXXXXX");
	if (mkdtemp(t->path) == NULL) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int file_teardown(void **state)
{
	struct tmpdir *t = *state;
	int rc = nftw(t->path, remove_entry, 8, FTW_DEPTH | FTW_PHYS);

	free(t);
	return rc;
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void test_load_file(void **state)
{
	struct tmpdir *t = *state;
	char path[128], creds[128];
	struct errbuf err = {""};
	struct config *cfg;

	snprintf(path, sizeof(path), "%s/sockgate.conf", t->path);
	write_file(path, GW(""), strlen(GW("")));
	cfg = config_load(path, &err);
	assert_non_null(cfg);
	snprintf(creds, sizeof(creds), "%s/users", t->path);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->gateways[0].credentials_path, creds);
	config_unref(cfg);

	/* Messages from a file carry its path. */
	write_file(path, GW("max_sessions = 0;\n"), strlen(GW("max_sessions = 0;\n")));
	assert_null(config_load(path, &err));
	assert_true(has_file_line(err.msg, path));
	assert_non_null(strstr(err.msg, ":3: gateways.[0].max_sessions: 0 is out of range"));
}

static void test_load_missing(void **state)
{
	struct tmpdir *t = *state;
	char path[128];
	struct errbuf err = {""};

	snprintf(path, sizeof(path), "%s/nope.conf", t->path);
	assert_null(config_load(path, &err));
	assert_non_null(strstr(err.msg, "nope.conf: cannot open: No such file or directory"));
}

static void test_load_directory(void **state)
{
	struct tmpdir *t = *state;
	struct errbuf err = {""};
	char want[128];

	assert_null(config_load(t->path, &err));
	snprintf(want, sizeof(want), "%s: not a regular file", t->path);
	assert_string_equal(err.msg, want);
}

/* A FIFO is refused without blocking in open() for a writer. */
static void test_load_fifo(void **state)
{
	struct tmpdir *t = *state;
	struct errbuf err = {""};
	char path[128], want[160];

	snprintf(path, sizeof(path), "%s/fifo.conf", t->path);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_null(config_load(path, &err));
	snprintf(want, sizeof(want), "%s: not a regular file", path);
	assert_string_equal(err.msg, want);
}

/* /proc files report size 0, so this reads past the size hint. Its text is
 * not libconfig syntax: the point is that it was read at all. */
static void test_load_unknown_size(void **state)
{
	struct errbuf err = {""};

	assert_null(config_load("/proc/self/status", &err));
	assert_true(has_file_line(err.msg, "/proc/self/status"));
}

static void test_load_too_large(void **state)
{
	struct tmpdir *t = *state;
	size_t len = CONFIG_MAX_FILE_SIZE + 1;
	char path[128], *data = malloc(len);
	struct errbuf err = {""};

	assert_non_null(data);
	memset(data, '\n', len);
	snprintf(path, sizeof(path), "%s/big.conf", t->path);
	write_file(path, data, len);
	assert_null(config_load(path, &err));
	assert_non_null(strstr(err.msg, "big.conf: larger than 1 MiB"));

	/* The same limit holds for text handed over in memory. */
	free(data);
	data = malloc(len + 1);
	assert_non_null(data);
	memset(data, '\n', len);
	data[len] = '\0';
	assert_null(config_parse("mem", data, &err));
	assert_string_equal(err.msg, "mem: larger than 1 MiB; not a configuration file");
	free(data);
}

static void test_load_nul_byte(void **state)
{
	struct tmpdir *t = *state;
	static const char data[] = GW_OPEN GW_BASE GW_CLOSE "\0workers = 1;\n";
	char path[128];
	struct errbuf err = {""};

	snprintf(path, sizeof(path), "%s/nul.conf", t->path);
	write_file(path, data, sizeof(data) - 1);
	assert_null(config_load(path, &err));
	assert_non_null(strstr(err.msg, "nul.conf: contains a NUL byte"));
}

/* ---- allocation failures ---- */

/* The test binary is linked with --wrap for these, so the Nth allocation made
 * by the test or the core library can be made to fail. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static long alloc_countdown = -1; /* -1: never fail; else fail when it reaches 0 */

static int alloc_fails(void)
{
	if (alloc_countdown < 0 || alloc_countdown-- > 0)
		return 0;
	errno = ENOMEM;
	return 1;
}

void *__wrap_malloc(size_t n)
{
	return alloc_fails() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return alloc_fails() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return alloc_fails() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return alloc_fails() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	return alloc_fails() ? NULL : __real_strndup(s, n);
}

/* Fails each allocation in turn until the load succeeds: every failure must
 * say "out of memory" and free what was built (ASan's leak check). */
static void test_out_of_memory(void **state)
{
	static const char text[] =
		"gateways = (\n"
		"{ name = \"a\"; listen = ( \"127.0.0.1:0\", \"*:0\" );\n"
		"  upstream = ( \"127.0.0.1:1\", \"127.0.0.1:2\" );\n"
		"  credentials = \"users\"; login = { username_prompt = \"u\"; }; },\n"
		"{ name = \"b\"; upstream = \"127.0.0.1:3\"; credentials = \"/u\"; }\n"
		");\n";
	struct errbuf err;
	struct config *cfg = NULL;
	long n;

	for (n = 0; cfg == NULL && n < 1000; n++) {
		memset(&err, 0, sizeof(err));
		alloc_countdown = n;
		cfg = config_parse(NAME, text, &err);
		alloc_countdown = -1;
		if (cfg == NULL && strstr(err.msg, "out of memory") == NULL)
			fail_msg("allocation %ld: %s", n, err.msg);
	}
	assert_non_null(cfg);
	assert_true(n > 10);
	assert_int_equal(cfg->n_gateways, 2);
	config_unref(cfg);

	cfg = NULL;
	for (n = 0; cfg == NULL && n < 1000; n++) {
		memset(&err, 0, sizeof(err));
		alloc_countdown = n;
		cfg = config_load(SOCKGATE_EXAMPLE_CONF, &err);
		alloc_countdown = -1;
		if (cfg == NULL && strstr(err.msg, "out of memory") == NULL)
			fail_msg("allocation %ld: %s", n, err.msg);
	}
	assert_non_null(cfg);
	config_unref(cfg);
}

static void count_warning(const char *msg, void *arg);

/* The shipped, commented example must stay loadable. */
static void test_shipped_example(void **state)
{
	struct errbuf err = {""};
	struct config *cfg = config_load(SOCKGATE_EXAMPLE_CONF, &err);

	if (cfg == NULL)
		fail_msg("%s", err.msg);
	assert_true(cfg->n_gateways >= 1);
	assert_non_null(config_find_gateway(cfg, "demo"));
	for (size_t i = 0; i < cfg->n_gateways; i++)
		assert_true(cfg->gateways[i].credentials_path[0] == '/');
	/* The shipped settings are the safe ones: they agree with each other. */
	assert_int_equal(config_warnings(cfg, count_warning, NULL), 0);
	config_unref(cfg);
}

static void count_warning(const char *msg, void *arg)
{
	char *seen = arg;

	if (seen != NULL)
		snprintf(seen, 1024, "%s", msg);
}

/* Settings that work against each other are named, one warning each; the
 * defaults raise none. */
static void test_warnings(void **state)
{
	static const struct {
		const char *top, *gw, *says;
	} rows[] = {
		{"limits = { per_source_startups = 0; };", "",
		 "limits.per_source_startups = 0: one host may hold every login slot"},
		{"penalties = { enabled = false; };", "", "penalties.enabled = false"},
		{"penalties = { noauth = 0; };", "", "penalties.noauth = 0"},
		{"log_limits = { per_source = 0; };", "", "log_limits.per_source = 0"},
		{"", "max_sessions = 1000;",
		 "gateway demo: max_sessions (1000) is reached before limits.startups.begin "
		 "(6000)"},
		{"limits = { per_source_startups = 1000; };", "",
		 "gateway demo: one host may hold 1000 of its 9000 sessions"},
		{"", "login = { grace_time = 0; };", "gateway demo: login.grace_time = 0"},
	};
	char text[1024], seen[1024];
	struct config *cfg;

	(void)state;
	cfg = must_parse(NAME, GW(""));
	assert_int_equal(config_warnings(cfg, count_warning, NULL), 0);
	config_unref(cfg);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(text, sizeof(text),
			 "%s\ngateways = ( { name = \"demo\"; upstream = \"127.0.0.1:1\"; "
			 "credentials = \"/u\"; %s } );\n",
			 rows[i].top, rows[i].gw);
		cfg = must_parse(NAME, text);
		seen[0] = '\0';
		assert_int_equal(config_warnings(cfg, count_warning, seen), 1);
		if (strstr(seen, rows[i].says) == NULL)
			fail_msg("row %zu: \"%s\" does not say \"%s\"", i, seen, rows[i].says);
		config_unref(cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_example_values),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_multiple_gateways),
		cmocka_unit_test(test_single_string_listen),
		cmocka_unit_test(test_wildcard_listen),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_workers),
		cmocka_unit_test(test_message_length),
		cmocka_unit_test(test_credentials_relative),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test_setup_teardown(test_load_file, file_setup, file_teardown),
		cmocka_unit_test_setup_teardown(test_load_missing, file_setup, file_teardown),
		cmocka_unit_test_setup_teardown(test_load_directory, file_setup, file_teardown),
		cmocka_unit_test_setup_teardown(test_load_fifo, file_setup, file_teardown),
		cmocka_unit_test(test_load_unknown_size),
		cmocka_unit_test_setup_teardown(test_load_too_large, file_setup, file_teardown),
		cmocka_unit_test_setup_teardown(test_load_nul_byte, file_setup, file_teardown),
		cmocka_unit_test(test_shipped_example),
		cmocka_unit_test(test_out_of_memory),
	};

	return test_exit(cmocka_run_group_tests(tests, group_setup, NULL));
}
