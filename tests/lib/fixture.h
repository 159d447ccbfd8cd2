/* fixture: a running sockgate for integration tests: a temporary directory with
 * a credentials file and a configuration, a sockgate-server upstream, and the
 * daemon itself, started with a NOTIFY_SOCKET (ready means READY=1) and its log
 * drained by a logtap. Plus client-side helpers that speak the login exchange. */
#ifndef SOCKGATE_FIXTURE_H
#define SOCKGATE_FIXTURE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "harness.h"
#include "logtap.h"

#define FIXTURE_TIMEOUT_MS HARNESS_TIMEOUT_MS

struct fixture {
	char dir[PATH_MAX];
	char conf[PATH_MAX + 32];
	char users[PATH_MAX + 32];
	struct harness_proc upstream;
	int upstream_port;
	struct harness_proc daemon;
	struct logtap *log;
	int notify_fd;
	char notify_path[128];
	int port;            /* the first IPv4 listener's port */
	int port6;           /* the first IPv6 listener's port, or 0 */
	size_t cursor;       /* logtap cursor for fixture_log_wait */
	bool no_credentials; /* fixture_config() names no credentials file (auth = "pam") */
};

/* Makes the directory and writes users: pairs of user and password, NULL-ended.
 * A user written "USER:FIELDS" gets ":FIELDS" after the hash (totp=..., expires=...). */
int fixture_init(struct fixture *f, const char *const users[]);
/* (Re)writes the credentials file with these users (atomically, via rename). */
int fixture_write_users(struct fixture *f, const char *const users[]);
/* Starts sockgate-server on 127.0.0.1, ephemeral port, with extra args (NULL-ended). */
int fixture_upstream(struct fixture *f, const char *const args[]);
/* Writes the configuration text (atomically). */
int fixture_write_config(struct fixture *f, const char *text);
/* A one-gateway configuration: listen on 127.0.0.1:0, upstream the fixture's
 * upstream, credentials the fixture's users, and extra settings (may be ""). */
int fixture_simple_config(struct fixture *f, const char *extra);
/* The same with top-level settings too (penalties, limits, ...); the gateway
 * also listens on [::1]:0 (its port: the second "listening" line). */
int fixture_config(struct fixture *f, const char *top, const char *extra);
/* Starts the daemon on the written configuration and waits for READY=1 and the
 * first "listening" line (its port goes to f->port). */
int fixture_start(struct fixture *f);
/* The same with the daemon run under a command that execs the rest of its arguments, e.g.
 * {"/usr/bin/prlimit", "--nofile=64:64", "--", NULL}; NULL: as fixture_start(). */
int fixture_start_with(struct fixture *f, const char *const prefix[]);
/* The same with more environment ("NAME=value", NULL-ended, at most 6), e.g. WATCHDOG_USEC. */
int fixture_start_env(struct fixture *f, const char *const prefix[], const char *const extra[]);
/* Waits for a log line containing needle after the last one waited for. */
int fixture_log_wait(struct fixture *f, const char *needle, char *line, size_t len);
/* Sends SIGHUP and waits for the reload's READY=1. */
int fixture_reload(struct fixture *f);
/* SIGTERM, wait for exit; returns the exit code (-1 if killed or timed out). */
int fixture_stop(struct fixture *f);
/* The same for the upstream sockgate-server, unless it exited already; 0 when there is none.
 * Its connection processes go on (fixture_teardown() kills them). Stop the daemon first. */
int fixture_stop_upstream(struct fixture *f);
/* Stops whatever runs, dumps the log (and the upstream's stderr) if dump, removes the
 * directory. */
void fixture_teardown(struct fixture *f, int dump);

/* The usual start of an integration test: the directory with users, a sockgate-server upstream
 * with upstream_args (NULL-ended; NULL for none), the configuration fixture_config(top, extra)
 * writes, and the daemon started. Returns 0, or -1 at the first step that failed. */
int fixture_setup(struct fixture *f, const char *const users[], const char *const upstream_args[],
		  const char *top, const char *extra);
/* The usual end: stops the daemon (unless it exited) and then the upstream, checks that secret
 * (may be NULL) never reached the daemon's log, and tears down, dumping the logs if anything was
 * wrong. Returns 0 when both exited cleanly and nothing leaked: under ASan or valgrind
 * (SOCKGATE_TEST_WRAPPER) a clean exit also proves no leak and no memory error. */
int fixture_finish(struct fixture *f, const char *secret);

/* Reads from fd (a socket or a pipe) until the bytes received (kept in buf, NUL-terminated) contain
 * text. Returns the total received, or -1 on timeout/EOF (buf holds what came). */
ssize_t fixture_expect(int fd, const char *text, char *buf, size_t cap, int timeout_ms);
/* Connects to port and logs in; on success returns the socket positioned right
 * after the success message, else -1. */
int fixture_login(int port, const char *user, const char *password);

#endif
