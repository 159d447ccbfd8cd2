/* stats: the registry of counters (a list of gateway names that only grows), the
 * gauge snapshot, and the Prometheus text exposition (version 0.0.4) of both plus
 * the process's own figures from /proc. */
#include "stats.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct stats {
	pthread_mutex_t lock; /* the list's links, the snapshot pointer */
	struct stats_gateway *gateways;
	struct stats_gateway **tail;
	/* The renderer's copy of the daemon's gauges, NULL until the first one: one
	 * allocation, the arrays after the header and the strings after them. */
	struct stats_gauges *snapshot;
	uint64_t check_buckets[STATS_CHECK_BUCKETS + 1];
	uint64_t check_us_sum;
	time_t created; /* the start time where /proc/stat is hidden (ProcSubset=pid) */
};

/* Bucket bounds in the unit the observation comes in, and as Prometheus prints
 * them (Go's shortest float form, as its client libraries write "le"). */
static const uint64_t session_bounds_ms[STATS_SESSION_BUCKETS] = {
	1000, 10000, 60000, 300000, 1800000, 3600000, 14400000, 86400000,
};
static const char *const session_le[STATS_SESSION_BUCKETS + 1] = {
	"1", "10", "60", "300", "1800", "3600", "14400", "86400", "+Inf",
};
static const uint64_t check_bounds_us[STATS_CHECK_BUCKETS] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
};
static const char *const check_le[STATS_CHECK_BUCKETS + 1] = {
	"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
	"0.1",   "0.25",   "0.5",   "1",    "2.5",   "+Inf",
};

static const char *const refusal_label[STATS_REFUSED_N] = {
	[STATS_REFUSED_STARTUPS] = "startups",
	[STATS_REFUSED_PENALISED] = "penalised",
	[STATS_REFUSED_PER_SOURCE] = "per_source",
	[STATS_REFUSED_MAX_SESSIONS] = "max_sessions",
	[STATS_REFUSED_DENIED] = "denied",
	[STATS_REFUSED_NOT_BALANCER] = "not_balancer",
	[STATS_REFUSED_BAD_PROXY_HEADER] = "bad_proxy_header",
	[STATS_REFUSED_OTHER] = "other",
};

static const char *const login_label[STATS_LOGIN_N] = {
	[STATS_LOGIN_BAD_CREDENTIALS] = "bad_credentials",
	[STATS_LOGIN_WRONG_CODE] = "wrong_code",
	[STATS_LOGIN_CODE_REUSED] = "code_reused",
	[STATS_LOGIN_NO_SECOND_FACTOR] = "no_second_factor",
	[STATS_LOGIN_LOCKED] = "locked",
	[STATS_LOGIN_EXPIRED] = "expired",
	[STATS_LOGIN_NOT_PERMITTED] = "not_permitted",
	[STATS_LOGIN_WRONG_NETWORK] = "wrong_network",
	[STATS_LOGIN_ACCOUNT_REFUSED] = "account_refused",
	[STATS_LOGIN_PASSWORD_CHANGE] = "password_change",
	[STATS_LOGIN_PAM_ERROR] = "pam_error",
	[STATS_LOGIN_OTHER] = "other",
};

/* The denial texts of credentials.c, auth.c and pamauth.c. A text added there
 * and not here counts as "other" until it is added. */
static const struct {
	const char *text;
	enum stats_login_reason reason;
} login_texts[] = {
	{"bad credentials", STATS_LOGIN_BAD_CREDENTIALS},
	{"wrong verification code", STATS_LOGIN_WRONG_CODE},
	{"verification code already used", STATS_LOGIN_CODE_REUSED},
	{"no second factor enrolled", STATS_LOGIN_NO_SECOND_FACTOR},
	{"account locked", STATS_LOGIN_LOCKED},
	{"account expired", STATS_LOGIN_EXPIRED},
	{"target not permitted", STATS_LOGIN_NOT_PERMITTED},
	{"address not allowed for this user", STATS_LOGIN_WRONG_NETWORK},
	{"account refused by PAM", STATS_LOGIN_ACCOUNT_REFUSED},
	{"password change required", STATS_LOGIN_PASSWORD_CHANGE},
	{"the authentication service is unavailable", STATS_LOGIN_PAM_ERROR},
	{"PAM could not start the service", STATS_LOGIN_PAM_ERROR},
	{"PAM failed", STATS_LOGIN_PAM_ERROR},
};

struct stats_gateway stats_gateway_unused = {.name = ""};

struct stats *stats_create(struct errbuf *err)
{
	struct stats *st = calloc(1, sizeof(*st));

	if (st == NULL) {
		errbuf_set(err, "out of memory for the metrics' counters");
		return NULL;
	}
	pthread_mutex_init(&st->lock, NULL);
	st->tail = &st->gateways;
	st->created = time(NULL);
	return st;
}

void stats_free(struct stats *st)
{
	struct stats_gateway *g, *next;

	if (st == NULL)
		return;
	for (g = st->gateways; g != NULL; g = next) {
		next = g->next;
		free((char *)g->name);
		free(g);
	}
	free(st->snapshot);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

struct stats_gateway *stats_gateway_get(struct stats *st, const char *name)
{
	struct stats_gateway *g;

	pthread_mutex_lock(&st->lock);
	for (g = st->gateways; g != NULL; g = g->next)
		if (strcmp(g->name, name) == 0)
			goto out;
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		goto out;
	g->name = strdup(name);
	if (g->name == NULL) {
		free(g);
		g = NULL;
		goto out;
	}
	*st->tail = g;
	st->tail = &g->next;
out:
	pthread_mutex_unlock(&st->lock);
	return g;
}

enum stats_login_reason stats_login_reason(const char *text)
{
	size_t i;

	if (text == NULL)
		return STATS_LOGIN_OTHER;
	/* The text may go on with a detail: "bad credentials (client gone)". */
	for (i = 0; i < sizeof(login_texts) / sizeof(login_texts[0]); i++) {
		size_t n = strlen(login_texts[i].text);

		if (strncmp(text, login_texts[i].text, n) == 0 &&
		    (text[n] == '\0' || text[n] == ' ' || text[n] == ':'))
			return login_texts[i].reason;
	}
	return STATS_LOGIN_OTHER;
}

/* The index of the first bucket whose bound holds v; n (+Inf) if none does. */
static size_t stats_bucket(const uint64_t *bounds, size_t n, uint64_t v)
{
	size_t i;

	for (i = 0; i < n && v > bounds[i]; i++)
		;
	return i;
}

void stats_observe_session(struct stats_gateway *g, uint64_t duration_ms)
{
	stats_inc(&g->session_buckets[stats_bucket(session_bounds_ms, STATS_SESSION_BUCKETS,
						   duration_ms)]);
	stats_add(&g->session_ms_sum, duration_ms);
}

void stats_observe_check(struct stats *st, uint64_t us)
{
	stats_inc(&st->check_buckets[stats_bucket(check_bounds_us, STATS_CHECK_BUCKETS, us)]);
	stats_add(&st->check_us_sum, us);
}

static const char *stats_str(const char *s)
{
	return s != NULL ? s : "";
}

static bool stats_same_gateway(const struct stats_gauge_gateway *a,
			       const struct stats_gauge_gateway *b)
{
	return strcmp(stats_str(a->name), stats_str(b->name)) == 0;
}

static bool stats_same_upstream(const struct stats_gauge_upstream *a,
				const struct stats_gauge_upstream *b)
{
	return strcmp(stats_str(a->gateway), stats_str(b->gateway)) == 0 &&
	       strcmp(stats_str(a->target), stats_str(b->target)) == 0 &&
	       strcmp(stats_str(a->address), stats_str(b->address)) == 0;
}

static char *stats_copy_str(char **arena, const char *s)
{
	size_t n = strlen(stats_str(s)) + 1;
	char *copy = *arena;

	memcpy(copy, stats_str(s), n);
	*arena += n;
	return copy;
}

int stats_set_gauges(struct stats *st, const struct stats_gauges *in)
{
	struct stats_gauges *snap, *old;
	struct stats_gauge_gateway *gw;
	struct stats_gauge_upstream *up;
	size_t i, j, n_gw = 0, n_up = 0, strings = 0;
	char *arena;

	/* Every struct's size is a multiple of its alignment, so the arrays sit at
	 * aligned offsets. */
	for (i = 0; i < in->n_gateways; i++)
		strings += strlen(stats_str(in->gateways[i].name)) + 1;
	for (i = 0; i < in->n_upstreams; i++)
		strings += strlen(stats_str(in->upstreams[i].gateway)) +
			   strlen(stats_str(in->upstreams[i].target)) +
			   strlen(stats_str(in->upstreams[i].address)) + 3;
	snap = malloc(sizeof(*snap) + in->n_gateways * sizeof(*gw) + in->n_upstreams * sizeof(*up) +
		      strings);
	if (snap == NULL)
		return -1;
	gw = (struct stats_gauge_gateway *)(snap + 1);
	up = (struct stats_gauge_upstream *)(gw + in->n_gateways);
	arena = (char *)(up + in->n_upstreams);

	/* A series twice in one scrape makes Prometheus reject the whole scrape. */
	for (i = 0; i < in->n_gateways; i++) {
		for (j = 0; j < n_gw && !stats_same_gateway(&gw[j], &in->gateways[i]); j++)
			;
		if (j < n_gw)
			continue;
		gw[n_gw] = in->gateways[i];
		gw[n_gw++].name = stats_copy_str(&arena, in->gateways[i].name);
	}
	for (i = 0; i < in->n_upstreams; i++) {
		for (j = 0; j < n_up && !stats_same_upstream(&up[j], &in->upstreams[i]); j++)
			;
		if (j < n_up)
			continue;
		up[n_up].gateway = stats_copy_str(&arena, in->upstreams[i].gateway);
		up[n_up].target = stats_copy_str(&arena, in->upstreams[i].target);
		up[n_up].address = stats_copy_str(&arena, in->upstreams[i].address);
		up[n_up++].up = in->upstreams[i].up;
	}
	*snap = (struct stats_gauges){
		.gateways = gw,
		.n_gateways = n_gw,
		.upstreams = up,
		.n_upstreams = n_up,
		.check_queue = in->check_queue,
		.penalised_sources = in->penalised_sources,
	};

	pthread_mutex_lock(&st->lock);
	old = st->snapshot;
	st->snapshot = snap;
	pthread_mutex_unlock(&st->lock);
	free(old);
	return 0;
}

/* ---- the text exposition ---- */

/* A growing output buffer; after a failed allocation it ignores further output. */
struct stats_buf {
	char *p;
	size_t len, cap;
	bool failed;
};

static bool stats_reserve(struct stats_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	for (cap = b->cap ? b->cap : 4096; cap < b->len + more + 1; cap *= 2)
		;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void stats_puts(struct stats_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (!stats_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n + 1);
	b->len += n;
}

static void stats_printf(struct stats_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void stats_printf(struct stats_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !stats_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* A label value as the format wants it: backslash, double quote and newline
 * escaped; everything else, UTF-8 included, as it is. */
static void stats_label_value(struct stats_buf *b, const char *v)
{
	const char *p;

	if (!stats_reserve(b, 2 * strlen(v)))
		return;
	for (p = v; *p != '\0'; p++) {
		if (*p == '\\' || *p == '"') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = *p;
		} else if (*p == '\n') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = 'n';
		} else {
			b->p[b->len++] = *p;
		}
	}
	b->p[b->len] = '\0';
}

static void stats_family(struct stats_buf *b, const char *name, const char *type, const char *help)
{
	stats_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample: name{k1="v1",...} value. labels holds n_labels name, value pairs. */
static void stats_sample(struct stats_buf *b, const char *name, const char *const *labels,
			 size_t n_labels, const char *value)
{
	size_t i;

	stats_puts(b, name);
	for (i = 0; i < n_labels; i++) {
		stats_printf(b, "%s%s=\"", i == 0 ? "{" : ",", labels[2 * i]);
		stats_label_value(b, labels[2 * i + 1]);
		stats_puts(b, "\"");
	}
	stats_printf(b, "%s %s\n", n_labels > 0 ? "}" : "", value);
}

static void stats_sample_u64(struct stats_buf *b, const char *name, const char *const *labels,
			     size_t n_labels, uint64_t v)
{
	char value[24];

	snprintf(value, sizeof(value), "%" PRIu64, v);
	stats_sample(b, name, labels, n_labels, value);
}

/* The samples of one histogram: cumulative buckets, _sum (sum / divisor, printed
 * exactly in decimal), _count. labels has room for one more pair, for "le". */
static void stats_histogram(struct stats_buf *b, const char *name, const char **labels,
			    size_t n_labels, const uint64_t *buckets, const char *const *le,
			    size_t n_buckets, uint64_t sum, unsigned divisor, int decimals)
{
	char sample[128], value[48];
	uint64_t total = 0, counts[16];
	size_t i;

	/* Each bucket read once, so the cumulative counts and _count agree. */
	for (i = 0; i < n_buckets; i++)
		counts[i] = stats_read(&buckets[i]);
	snprintf(sample, sizeof(sample), "%s_bucket", name);
	labels[2 * n_labels] = "le";
	for (i = 0; i < n_buckets; i++) {
		total += counts[i];
		labels[2 * n_labels + 1] = le[i];
		stats_sample_u64(b, sample, labels, n_labels + 1, total);
	}
	snprintf(sample, sizeof(sample), "%s_sum", name);
	snprintf(value, sizeof(value), "%" PRIu64 ".%0*" PRIu64, sum / divisor, decimals,
		 sum % divisor);
	stats_sample(b, sample, labels, n_labels, value);
	snprintf(sample, sizeof(sample), "%s_count", name);
	stats_sample_u64(b, sample, labels, n_labels, total);
}

/* The process's figures; a field it could not read stays -1 and is left out. */
struct stats_process {
	long long open_fds, max_fds, rss_bytes, vm_bytes, threads;
	long long start_time_s;
	uint64_t cpu_us;
};

static long long stats_count_fds(void)
{
	struct dirent *e;
	long long n = 0;
	DIR *d = opendir("/proc/self/fd");

	if (d == NULL)
		return -1;
	/* Everything but ".", ".." and the descriptor reading the directory. */
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			n++;
	closedir(d);
	return n;
}

static void stats_read_status(struct stats_process *p)
{
	char line[256];
	long long v;
	FILE *f = fopen("/proc/self/status", "re");

	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmRSS: %lld kB", &v) == 1)
			p->rss_bytes = v * 1024;
		else if (sscanf(line, "VmSize: %lld kB", &v) == 1)
			p->vm_bytes = v * 1024;
		else if (sscanf(line, "Threads: %lld", &v) == 1)
			p->threads = v;
	}
	fclose(f);
}

/* Field 22 of /proc/self/stat counts clock ticks since boot; /proc/stat's btime
 * is the boot in seconds since the epoch. */
static long long stats_start_time(void)
{
	char buf[1024], *p;
	unsigned long long ticks = 0, btime = 0;
	long hz = sysconf(_SC_CLK_TCK);
	size_t n;
	int field;
	FILE *f;

	f = fopen("/proc/self/stat", "re");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name (field 2) may hold spaces and parentheses: skip past its
	 * last ')', to field 3. */
	p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	for (field = 2; field < 22 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %llu", &ticks) != 1)
		return -1;

	f = fopen("/proc/stat", "re");
	if (f == NULL)
		return -1;
	while (fgets(buf, sizeof(buf), f) != NULL)
		if (sscanf(buf, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	if (btime == 0 || hz <= 0)
		return -1;
	return (long long)(btime + ticks / (unsigned long long)hz);
}

static void stats_read_process(struct stats_process *p)
{
	struct rlimit rl;
	struct rusage ru;

	*p = (struct stats_process){-1, -1, -1, -1, -1, -1, 0};
	p->open_fds = stats_count_fds();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		p->max_fds = (long long)rl.rlim_cur;
	stats_read_status(p);
	p->start_time_s = stats_start_time();
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		p->cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
			    (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
}

static void stats_process_gauge(struct stats_buf *b, const char *name, const char *help,
				long long v)
{
	if (v < 0)
		return;
	stats_family(b, name, "gauge", help);
	stats_sample_u64(b, name, NULL, 0, (uint64_t)v);
}

static void stats_render_process(struct stats_buf *b, const struct stats_process *p)
{
	char value[48];

	stats_family(b, "process_cpu_seconds_total", "counter",
		     "User and system CPU time the process has used, in seconds.");
	snprintf(value, sizeof(value), "%" PRIu64 ".%06" PRIu64, p->cpu_us / 1000000,
		 p->cpu_us % 1000000);
	stats_sample(b, "process_cpu_seconds_total", NULL, 0, value);
	stats_process_gauge(b, "process_open_fds", "Open file descriptors.", p->open_fds);
	stats_process_gauge(b, "process_max_fds", "The limit on open file descriptors.",
			    p->max_fds);
	stats_process_gauge(b, "process_resident_memory_bytes", "Resident memory size in bytes.",
			    p->rss_bytes);
	stats_process_gauge(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
			    p->vm_bytes);
	stats_process_gauge(b, "process_threads", "Threads of the process.", p->threads);
	stats_process_gauge(b, "process_start_time_seconds",
			    "When the process started, in seconds since the epoch.",
			    p->start_time_s);
}

/* Label lists: name, value pairs (a histogram's has room for "le" at the end). */
#define LABELS(...) ((const char *[8]){__VA_ARGS__})

/* The per-gateway counters, one family at a time (the format wants a family's
 * samples together). Called with st->lock held, which keeps the list still. */
static void stats_render_counters(struct stats_buf *b, struct stats *st)
{
	struct stats_gateway *g;
	size_t i;

	stats_family(b, "sockgate_connections_accepted_total", "counter",
		     "Connections a gateway's listeners accepted, the refused ones included.");
	for (g = st->gateways; g != NULL; g = g->next)
		stats_sample_u64(b, "sockgate_connections_accepted_total",
				 LABELS("gateway", g->name), 1, stats_read(&g->accepted));

	stats_family(b, "sockgate_connections_refused_total", "counter",
		     "Connections turned away at admission, by reason.");
	for (g = st->gateways; g != NULL; g = g->next)
		for (i = 0; i < STATS_REFUSED_N; i++)
			stats_sample_u64(b, "sockgate_connections_refused_total",
					 LABELS("gateway", g->name, "reason", refusal_label[i]), 2,
					 stats_read(&g->refused[i]));

	stats_family(b, "sockgate_logins_total", "counter",
		     "Login attempts that got a verdict: result ok, or failed with a reason.");
	for (g = st->gateways; g != NULL; g = g->next) {
		stats_sample_u64(b, "sockgate_logins_total",
				 LABELS("gateway", g->name, "result", "ok"), 2,
				 stats_read(&g->logins_ok));
		for (i = 0; i < STATS_LOGIN_N; i++)
			stats_sample_u64(b, "sockgate_logins_total",
					 LABELS("gateway", g->name, "result", "failed", "reason",
						login_label[i]),
					 3, stats_read(&g->logins_failed[i]));
	}

	stats_family(b, "sockgate_relayed_bytes_total", "counter",
		     "Bytes relayed after the login: direction in is client to upstream, out is "
		     "upstream to client.");
	for (g = st->gateways; g != NULL; g = g->next) {
		stats_sample_u64(b, "sockgate_relayed_bytes_total",
				 LABELS("gateway", g->name, "direction", "in"), 2,
				 stats_read(&g->bytes_in));
		stats_sample_u64(b, "sockgate_relayed_bytes_total",
				 LABELS("gateway", g->name, "direction", "out"), 2,
				 stats_read(&g->bytes_out));
	}

	stats_family(b, "sockgate_upstream_connect_failures_total", "counter",
		     "Connections to an upstream that failed (refused, timed out, TLS).");
	for (g = st->gateways; g != NULL; g = g->next)
		stats_sample_u64(b, "sockgate_upstream_connect_failures_total",
				 LABELS("gateway", g->name), 1,
				 stats_read(&g->upstream_connect_failures));

	stats_family(b, "sockgate_tls_handshakes_total", "counter",
		     "TLS handshakes with clients, by result.");
	for (g = st->gateways; g != NULL; g = g->next) {
		stats_sample_u64(b, "sockgate_tls_handshakes_total",
				 LABELS("gateway", g->name, "result", "ok"), 2,
				 stats_read(&g->tls_ok));
		stats_sample_u64(b, "sockgate_tls_handshakes_total",
				 LABELS("gateway", g->name, "result", "failed"), 2,
				 stats_read(&g->tls_failed));
	}

	stats_family(b, "sockgate_session_duration_seconds", "histogram",
		     "How long relayed sessions lasted, from the login to the close.");
	for (g = st->gateways; g != NULL; g = g->next)
		stats_histogram(b, "sockgate_session_duration_seconds", LABELS("gateway", g->name),
				1, g->session_buckets, session_le, STATS_SESSION_BUCKETS + 1,
				stats_read(&g->session_ms_sum), 1000, 3);
}

/* The gauge snapshot (NULL before the first one). Called with st->lock held. */
static void stats_render_gauges(struct stats_buf *b, const struct stats_gauges *s)
{
	const struct stats_gauge_upstream *u;
	size_t i;

	stats_family(b, "sockgate_sessions", "gauge",
		     "Open sessions, by state: logging_in (accepted, not yet relaying) or "
		     "relaying.");
	for (i = 0; s != NULL && i < s->n_gateways; i++) {
		stats_sample_u64(b, "sockgate_sessions",
				 LABELS("gateway", s->gateways[i].name, "state", "logging_in"), 2,
				 s->gateways[i].logging_in);
		stats_sample_u64(b, "sockgate_sessions",
				 LABELS("gateway", s->gateways[i].name, "state", "relaying"), 2,
				 s->gateways[i].relaying);
	}

	stats_family(b, "sockgate_upstream_up", "gauge",
		     "Whether an upstream address is taken as up (1) or down (0); target is empty "
		     "for a gateway's own upstream list.");
	for (i = 0; s != NULL && i < s->n_upstreams; i++) {
		u = &s->upstreams[i];
		stats_sample_u64(
			b, "sockgate_upstream_up",
			LABELS("gateway", u->gateway, "target", u->target, "upstream", u->address),
			3, u->up ? 1 : 0);
	}

	stats_family(b, "sockgate_password_check_queue", "gauge",
		     "Password checks waiting for a checking thread.");
	stats_sample_u64(b, "sockgate_password_check_queue", NULL, 0,
			 s != NULL ? s->check_queue : 0);
	stats_family(b, "sockgate_penalised_sources", "gauge",
		     "Sources (netblocks) refused by a penalty right now.");
	stats_sample_u64(b, "sockgate_penalised_sources", NULL, 0,
			 s != NULL ? s->penalised_sources : 0);
}

int stats_render(struct stats *st, char **text, size_t *len)
{
	struct stats_buf b = {0};
	struct stats_process proc;

	/* /proc first: no need to hold the lock over file reads. */
	stats_read_process(&proc);
	if (proc.start_time_s < 0)
		proc.start_time_s = (long long)st->created;

	stats_family(&b, "sockgate_build_info", "gauge",
		     "Always 1; the version of sockgate in a label.");
	stats_sample(&b, "sockgate_build_info", LABELS("version", SOCKGATE_VERSION), 1, "1");

	pthread_mutex_lock(&st->lock);
	stats_render_counters(&b, st);
	stats_render_gauges(&b, st->snapshot);
	pthread_mutex_unlock(&st->lock);

	stats_family(
		&b, "sockgate_password_check_duration_seconds", "histogram",
		"How long password checks took, from submission to verdict (queue wait included).");
	stats_histogram(&b, "sockgate_password_check_duration_seconds", LABELS(NULL), 0,
			st->check_buckets, check_le, STATS_CHECK_BUCKETS + 1,
			stats_read(&st->check_us_sum), 1000000, 6);

	stats_render_process(&b, &proc);

	if (b.failed || b.p == NULL) {
		free(b.p);
		*text = NULL;
		*len = 0;
		return -1;
	}
	*text = b.p;
	*len = b.len;
	return 0;
}
