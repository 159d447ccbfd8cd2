/* sgb_util: the verification pattern, addresses, /proc sampling, latency
 * statistics and JSON result lines of sgbench (see sgb.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "sgb.h"

static uint8_t *pattern;

uint64_t sgb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

void sgb_pattern_init(void)
{
	/* Twice the period, so any window of up to a period is contiguous. */
	size_t len = 2 * (size_t)SGB_PATTERN_PERIOD;
	uint64_t seed = 0x5347425f62656e63u; /* fixed: the upstream and the generator agree */

	if (pattern != NULL)
		return;
	pattern = malloc(len + 8);
	if (pattern == NULL) {
		fprintf(stderr, "sgbench: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < SGB_PATTERN_PERIOD; i += 8) {
		uint64_t v = splitmix64(&seed);

		memcpy(pattern + i, &v, 8);
	}
	memcpy(pattern + SGB_PATTERN_PERIOD, pattern, SGB_PATTERN_PERIOD);
}

const uint8_t *sgb_pattern_at(uint64_t pos)
{
	return pattern + pos % SGB_PATTERN_PERIOD;
}

uint64_t sgb_pattern_start(unsigned id)
{
	return ((uint64_t)id * 2654435761u + 12345u) % SGB_PATTERN_PERIOD;
}

size_t sgb_pattern_check(uint64_t pos, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		size_t n = len < SGB_PATTERN_SPAN ? len : SGB_PATTERN_SPAN;
		const uint8_t *p = sgb_pattern_at(pos);

		if (memcmp(buf, p, n) != 0) {
			for (size_t i = 0; i < n; i++) {
				if (buf[i] != p[i])
					return i + 1;
			}
		}
		buf += n;
		pos += n;
		len -= n;
	}
	return 0;
}

int sgb_parse_addr(const char *spec, int allow_zero, struct sockaddr_storage *ss, socklen_t *len,
		   char *err, size_t errlen)
{
	char host[NET_HOSTLEN], port[NET_PORTLEN];
	struct addrinfo *ai;
	struct errbuf eb;

	if (net_split_hostport(spec, allow_zero, host, port, &eb) < 0 ||
	    net_resolve(host, port, NET_RESOLVE_NUMERIC, &ai, &eb) < 0) {
		snprintf(err, errlen, "%s", eb.msg);
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

/* --- /proc --- */

static int read_small(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	return 0;
}

/* ppid and utime+stime+cutime+cstime (ticks) of pid from /proc/PID/stat. */
static int proc_stat(pid_t pid, pid_t *ppid, long long *ticks)
{
	char path[64], buf[1024];
	const char *p;
	long long f[20];
	int i = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return -1;
	/* The command name may hold anything, spaces and ')' included. */
	p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	p += 2;
	/* Fields from 3 (state) on; state is a letter. */
	p = strchr(p, ' ');
	while (p != NULL && i < 20) {
		f[i++] = strtoll(p + 1, (char **)&p, 10);
		if (*p != ' ')
			break;
	}
	if (i < 14)
		return -1;
	/* f[0] = ppid (field 4), utime..cstime are fields 14..17. */
	*ppid = (pid_t)f[0];
	*ticks = f[10] + f[11] + f[12] + f[13];
	return 0;
}

/* pid and its descendants, from one scan of /proc. Returns the count. */
static size_t proc_tree(pid_t root, pid_t *out, size_t cap)
{
	size_t n = 0, cnt = 0, ncap = 4096;
	pid_t(*all)[2] = malloc(ncap * sizeof(*all));
	struct dirent *de;
	DIR *d;

	if (all == NULL)
		return 0;
	d = opendir("/proc");
	if (d == NULL) {
		free(all);
		return 0;
	}
	while ((de = readdir(d)) != NULL) {
		pid_t pid, ppid;
		long long t;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (proc_stat(pid, &ppid, &t) < 0)
			continue;
		if (cnt == ncap) {
			void *nb = realloc(all, 2 * ncap * sizeof(*all));

			if (nb == NULL)
				break;
			all = nb;
			ncap *= 2;
		}
		all[cnt][0] = pid;
		all[cnt][1] = ppid;
		cnt++;
	}
	closedir(d);
	out[n++] = root;
	for (size_t i = 0; i < n && n < cap; i++) {
		for (size_t k = 0; k < cnt && n < cap; k++) {
			if (all[k][1] == out[i])
				out[n++] = all[k][0];
		}
	}
	free(all);
	return n;
}

static long status_kib(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p != NULL ? strtol(p + strlen(key), NULL, 10) : 0;
}

#define SGB_MAX_TREE 32768

static long count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	long n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n;
}

int sgb_proc_mem(pid_t pid, struct sgb_mem *m)
{
	static pid_t tree[SGB_MAX_TREE];
	char path[64], buf[4096];
	size_t n = proc_tree(pid, tree, SGB_MAX_TREE);

	memset(m, 0, sizeof(*m));
	if (n == 0 || kill(pid, 0) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/%d/status", (int)tree[i]);
		if (read_small(path, buf, sizeof(buf)) < 0)
			continue;
		m->rss_kib += status_kib(buf, "\nVmRSS:");
		m->anon_kib += status_kib(buf, "\nRssAnon:");
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)tree[i]);
		if (read_small(path, buf, sizeof(buf)) == 0)
			m->pss_kib += status_kib(buf, "\nPss:");
		m->fds += count_fds(tree[i]);
		m->nprocs++;
	}
	return 0;
}

long long sgb_proc_cpu_ms(pid_t pid)
{
	static pid_t tree[SGB_MAX_TREE];
	size_t n = proc_tree(pid, tree, SGB_MAX_TREE);
	long long sum = 0, hz = sysconf(_SC_CLK_TCK);

	for (size_t i = 0; i < n; i++) {
		pid_t ppid;
		long long t;

		if (proc_stat(tree[i], &ppid, &t) == 0)
			sum += t;
	}
	return hz > 0 ? sum * 1000 / hz : -1;
}

/* --- JSON --- */

static void json_raw(struct sgb_json *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void json_raw(struct sgb_json *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->n >= sizeof(j->s))
		return;
	va_start(ap, fmt);
	n = vsnprintf(j->s + j->n, sizeof(j->s) - j->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		j->n += (size_t)n;
	if (j->n >= sizeof(j->s))
		j->n = sizeof(j->s) - 1;
}

static void json_key(struct sgb_json *j, const char *key)
{
	json_raw(j, "%s\"%s\":", j->n > 1 ? "," : "", key);
}

void sgb_json_str(struct sgb_json *j, const char *key, const char *val)
{
	json_key(j, key);
	json_raw(j, "\"");
	for (const unsigned char *p = (const unsigned char *)val; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			json_raw(j, "\\%c", *p);
		else if (*p < ' ' || *p >= 0x7f)
			json_raw(j, "\\u%04x", *p);
		else
			json_raw(j, "%c", *p);
	}
	json_raw(j, "\"");
}

void sgb_json_int(struct sgb_json *j, const char *key, long long val)
{
	json_key(j, key);
	json_raw(j, "%lld", val);
}

void sgb_json_num(struct sgb_json *j, const char *key, double val)
{
	json_key(j, key);
	if (isfinite(val))
		json_raw(j, "%.6g", val);
	else
		json_raw(j, "null");
}

void sgb_json_bool(struct sgb_json *j, const char *key, bool val)
{
	json_key(j, key);
	json_raw(j, "%s", val ? "true" : "false");
}

void sgb_json_begin(struct sgb_json *j, const struct sgb_opts *o)
{
	j->n = 0;
	json_raw(j, "{");
	sgb_json_str(j, "mode", o->mode);
	if (o->label != NULL)
		sgb_json_str(j, "label", o->label);
	if (o->target_spec != NULL)
		sgb_json_str(j, "target", o->target_spec);
	sgb_json_bool(j, "login", o->login.enabled);
}

void sgb_json_end(struct sgb_json *j)
{
	json_raw(j, "}");
	printf("%s\n", j->s);
	fflush(stdout);
}

/* --- latency --- */

void sgb_lat_add(struct sgb_lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap != 0 ? 2 * l->cap : 65536;
		void *nb;

		/* Tens of millions of samples are plenty; beyond, keep the first. */
		if (cap > (size_t)64 << 20)
			return;
		nb = realloc(l->ns, cap * sizeof(*l->ns));
		if (nb == NULL)
			return;
		l->ns = nb;
		l->cap = cap;
	}
	l->ns[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

double sgb_lat_pct_us(struct sgb_lat *l, double q)
{
	size_t i;

	if (l->n == 0)
		return NAN;
	i = (size_t)ceil(q * (double)l->n);
	if (i > 0)
		i--;
	if (i >= l->n)
		i = l->n - 1;
	return l->ns[i] / 1000.0;
}

void sgb_lat_report(struct sgb_lat *l, struct sgb_json *j, const char *prefix)
{
	char key[64];
	double sum = 0;
	static const struct {
		const char *name;
		double q;
	} pct[] = {{"p50_us", 0.5},
		   {"p90_us", 0.9},
		   {"p99_us", 0.99},
		   {"p999_us", 0.999},
		   {"max_us", 1.0}};

	qsort(l->ns, l->n, sizeof(*l->ns), cmp_u32);
	for (size_t i = 0; i < l->n; i++)
		sum += l->ns[i];
	snprintf(key, sizeof(key), "%ssamples", prefix);
	sgb_json_int(j, key, (long long)l->n);
	for (size_t i = 0; i < sizeof(pct) / sizeof(pct[0]); i++) {
		snprintf(key, sizeof(key), "%s%s", prefix, pct[i].name);
		sgb_json_num(j, key, sgb_lat_pct_us(l, pct[i].q));
	}
	snprintf(key, sizeof(key), "%smean_us", prefix);
	sgb_json_num(j, key, l->n > 0 ? sum / (double)l->n / 1000.0 : NAN);
}

void sgb_lat_free(struct sgb_lat *l)
{
	free(l->ns);
	memset(l, 0, sizeof(*l));
}
