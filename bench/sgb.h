/* sgb: what the parts of sgbench, the load generator, share: options, the
 * verification pattern, client connections that speak the login exchange, the
 * upstream protocol, /proc sampling and result output. Not part of the daemon. */
#ifndef SOCKGATE_SGB_H
#define SOCKGATE_SGB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Every stream of bench data is a window on one pseudo-random ring of this
 * many bytes (a prime, so it never lines up with buffer sizes); each
 * connection starts at its own offset, so a byte lost, duplicated, corrupted
 * or delivered on the wrong connection fails the comparison. */
#define SGB_PATTERN_PERIOD 1048573u
/* The largest span sgb_pattern_at() promises contiguous. */
#define SGB_PATTERN_SPAN SGB_PATTERN_PERIOD
/* Receive and send buffers of the bulk modes and the upstream. */
#define SGB_IO_LEN (256 * 1024)

/* The upstream protocol: the first line a client sends after the login. The
 * upstream answers "echo" by returning every following byte, and "sink START"
 * by checking every following byte against the pattern from START and, at
 * EOF, answering "OK BYTES\n" or "BAD OFFSET\n". */
#define SGB_HDR_ECHO "SGB echo\n"
#define SGB_HDR_MAX  64

struct sgb_login {
	bool enabled;
	const char *user, *pass;
	const char *user_prompt, *pass_prompt, *success;
};

struct sgb_opts {
	const char *mode;
	const char *label;
	const char *target_spec;
	struct sockaddr_storage target;
	socklen_t target_len;
	struct sgb_login login;
	char login_buf[512];
	unsigned conns;       /* connections measured (bulk, pingpong, storm) */
	double seconds;       /* measured time */
	double warmup;        /* discarded time before measuring */
	uint64_t bytes;       /* per connection, instead of seconds (bulk) */
	unsigned size;        /* ping-pong message, connrate payload */
	unsigned chunk;       /* bulk send size */
	unsigned threads;     /* generator threads */
	unsigned concurrency; /* connections set up at once (connrate, logins, idle, storm) */
	pid_t pid;            /* the daemon whose memory and CPU are sampled */
	double rate;          /* paced pings per second per connection (storm) */
	unsigned sessions;    /* idle */
	double settle;        /* idle: seconds between the last session and the sample */
	double timeout;       /* overall limit */
	bool verify;
	bool resume; /* tlshandshakes: resume a primed session */
	/* serve, forkrelay */
	const char *listen_spec;
	const char *upstream_spec;
	bool fork; /* serve: a process per connection */
	/* hash */
	const char *hash_salt;
	unsigned iterations;
};

/* The current CLOCK_MONOTONIC time in nanoseconds. */
uint64_t sgb_now_ns(void);

/* Fills the ring once; call before any thread starts. */
void sgb_pattern_init(void);
/* Pointer to the pattern byte at position pos; SGB_PATTERN_SPAN bytes follow. */
const uint8_t *sgb_pattern_at(uint64_t pos);
/* The start offset of connection number id. */
uint64_t sgb_pattern_start(unsigned id);
/* 0 if buf[0..len) equals the pattern from pos, else 1 + the index of the
 * first differing byte. */
size_t sgb_pattern_check(uint64_t pos, const uint8_t *buf, size_t len);

/* Resolves a numeric HOST:PORT ([v6]:PORT); port 0 only if allow_zero. */
int sgb_parse_addr(const char *spec, int allow_zero, struct sockaddr_storage *ss, socklen_t *len,
		   char *err, size_t errlen);

/* A client connection from connect() to the end of the login. */
enum sgb_link_state {
	SGB_LINK_CONNECTING = 0,
	SGB_LINK_USERNAME,
	SGB_LINK_PASSWORD,
	SGB_LINK_WELCOME,
	SGB_LINK_READY,
};

struct sgb_link {
	int fd;
	enum sgb_link_state st;
	bool refused;     /* the server refused the login (not worth retrying) */
	uint64_t t_start; /* when connect() was called */
	size_t len;       /* bytes in buf */
	char buf[512];    /* login text received and not yet matched */
};

/* A non-blocking connect to the target. Returns 0 (l->fd set) or -1. */
int sgb_link_start(struct sgb_link *l, const struct sgb_opts *o, char *err, size_t errlen);
/* Advances the exchange after an event on l->fd. Returns 1 when ready (the
 * login is done or there is none), 0 to wait for the next event (EPOLLIN, or
 * EPOLLOUT while connecting: see sgb_link_events), -1 when it failed (err
 * says why; the caller closes fd). Bytes that followed the success message
 * stay in buf. */
int sgb_link_step(struct sgb_link *l, const struct sgb_login *lg, char *err, size_t errlen);
/* The epoll events the link waits for in its state. */
uint32_t sgb_link_events(const struct sgb_link *l);

/* Opens n sessions, at most concurrency at a time, within timeout_s: each
 * connected, logged in if o->login says so, with nothing left unread. fds[]
 * receives their non-blocking sockets. Returns the number opened (n on
 * success); failures are counted in *errors and the first one is described
 * in err. A refused login stops at once: retrying would earn penalties. */
unsigned sgb_open_sessions(const struct sgb_opts *o, unsigned n, unsigned concurrency,
			   double timeout_s, int *fds, unsigned *errors, char *err, size_t errlen);

/* Sends all of buf on a non-blocking socket, waiting with poll() up to
 * timeout_ms. Returns 0 or -1. */
int sgb_send_all(int fd, const void *buf, size_t len, int timeout_ms);

/* Memory of a process and all its descendants (fork-per-connection relays,
 * nginx's workers), in KiB, and their CPU time in milliseconds. */
struct sgb_mem {
	long rss_kib, anon_kib, pss_kib;
	long fds; /* open descriptors */
	unsigned nprocs;
};
int sgb_proc_mem(pid_t pid, struct sgb_mem *m);
long long sgb_proc_cpu_ms(pid_t pid);

/* One result line: JSON on stdout, built with these. */
struct sgb_json {
	char s[4096];
	size_t n;
};
void sgb_json_begin(struct sgb_json *j, const struct sgb_opts *o);
void sgb_json_str(struct sgb_json *j, const char *key, const char *val);
void sgb_json_int(struct sgb_json *j, const char *key, long long val);
void sgb_json_num(struct sgb_json *j, const char *key, double val);
void sgb_json_bool(struct sgb_json *j, const char *key, bool val);
void sgb_json_end(struct sgb_json *j);

/* Latency samples in nanoseconds. */
struct sgb_lat {
	uint32_t *ns;
	size_t n, cap;
};
void sgb_lat_add(struct sgb_lat *l, uint64_t ns);
/* Sorts and adds p50_us, p90_us, p99_us, p999_us, max_us, mean_us, samples. */
void sgb_lat_report(struct sgb_lat *l, struct sgb_json *j, const char *prefix);
double sgb_lat_pct_us(struct sgb_lat *l, double q); /* after sgb_lat_report */
void sgb_lat_free(struct sgb_lat *l);

/* The modes; each returns the process exit code. */
int sgb_mode_bulk(const struct sgb_opts *o, bool both_ways);
int sgb_mode_pingpong(const struct sgb_opts *o);
int sgb_mode_connrate(const struct sgb_opts *o, bool logins_only);
int sgb_mode_idle(const struct sgb_opts *o);
int sgb_mode_storm(const struct sgb_opts *o);
int sgb_mode_serve(const struct sgb_opts *o);
int sgb_mode_forkrelay(const struct sgb_opts *o);
/* tlsbulk, tlshandshakes, tlsidle (sgb_tls.c) */
int sgb_mode_tls(const struct sgb_opts *o);

#endif
