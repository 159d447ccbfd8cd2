/* test_record: session recordings (record.h) as real files in a temporary
 * directory: asciicast v2 that Python's json reads and asciinema replays,
 * binary bytes as \u00XX, UTF-8 kept whole across chunks, the size and directory
 * caps, a full queue that drops and marks, write errors, mode 0600, O_EXCL. The
 * writer is held at a gate (openat is wrapped) where a test needs it behind;
 * recorder_flush() and recorder_free() are the only synchronisation. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testmain.h"

#include "asciinema_checks.h"

#include "record.h"

/* ---- the wrapped libc calls ------------------------------------------------ */

/* Only the writer's creating openat() (O_CREAT) and its writes to the file that
 * created are touched; every other call passes through. */
int __real_openat(int dirfd, const char *path, int flags, ...);
int __wrap_openat(int dirfd, const char *path, int flags, ...);
ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_closed;
static int created_fd = -1;  /* the last file the writer created */
static bool short_writes;    /* at most 7 bytes a call, and EINTR every other call */
static long fail_after = -1; /* ENOSPC once this many bytes went to the file */
static long written_to_file; /* bytes written to created_fd */

static void gate_set(bool closed)
{
	pthread_mutex_lock(&gate_lock);
	gate_closed = closed;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

int __wrap_openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	int fd;

	if (flags & O_CREAT) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
		pthread_mutex_lock(&gate_lock);
		while (gate_closed)
			pthread_cond_wait(&gate_cond, &gate_lock);
		pthread_mutex_unlock(&gate_lock);
	}
	fd = __real_openat(dirfd, path, flags, mode);
	if (flags & O_CREAT) {
		pthread_mutex_lock(&gate_lock);
		created_fd = fd;
		written_to_file = 0;
		pthread_mutex_unlock(&gate_lock);
	}
	return fd;
}

ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
	static unsigned calls;
	bool mine, shorten;
	long limit;
	ssize_t n;

	pthread_mutex_lock(&gate_lock);
	mine = fd >= 0 && fd == created_fd;
	shorten = short_writes;
	limit = fail_after;
	pthread_mutex_unlock(&gate_lock);
	if (!mine)
		return __real_write(fd, buf, len);
	if (shorten) {
		if (calls++ % 2 == 0) {
			errno = EINTR;
			return -1;
		}
		if (len > 7)
			len = 7;
	}
	if (limit >= 0) {
		pthread_mutex_lock(&gate_lock);
		if (written_to_file >= limit) {
			pthread_mutex_unlock(&gate_lock);
			errno = ENOSPC;
			return -1;
		}
		if ((long)len > limit - written_to_file)
			len = (size_t)(limit - written_to_file); /* a short write first */
		pthread_mutex_unlock(&gate_lock);
	}
	n = __real_write(fd, buf, len);
	if (n > 0) {
		pthread_mutex_lock(&gate_lock);
		written_to_file += n;
		pthread_mutex_unlock(&gate_lock);
	}
	return n;
}

/* ---- fixtures and helpers -------------------------------------------------- */

#define STARTED 1765095300 /* 2025-12-07 08:15:00 UTC */
#define STAMP   "20251207T081500Z"
#define T0      1000000 /* the loop's clock at the start, ms */
#define BIG     (1ULL << 30)
#define SESSION "c0ffee0100000000000000a1"

struct dir {
	char path[64];
};

static int setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));
	const char *tmp = getenv("TMPDIR");

	if (d == NULL)
		return -1;
	snprintf(d->path, sizeof(d->path), "%s/test_record.XXXXXX",
		 tmp != NULL && strlen(tmp) < 30 ? tmp : "/tmp");
	if (mkdtemp(d->path) == NULL) {
		free(d);
		return -1;
	}
	gate_set(false);
	pthread_mutex_lock(&gate_lock);
	created_fd = -1;
	short_writes = false;
	fail_after = -1;
	pthread_mutex_unlock(&gate_lock);
	*state = d;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	struct dir *d = *state;

	gate_set(false);
	nftw(d->path, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(d);
	return 0;
}

static struct recorder *new_recorder(size_t queue_bytes)
{
	struct errbuf err = {{0}};
	struct recorder *r = recorder_create(queue_bytes, &err);

	if (r == NULL)
		fail_msg("recorder_create: %s", err.msg);
	return r;
}

static struct recording *open_rec(struct recorder *r, const char *dir, uint64_t max_bytes,
				  uint64_t max_total, const char *id)
{
	struct errbuf err = {{0}};
	struct recording *rec =
		recording_open(r, dir, max_bytes, max_total, id, "demo", "alice", "127.0.0.1:40000",
			       "127.0.0.1:2323", STARTED, T0, &err);

	if (rec == NULL)
		fail_msg("recording_open: %s", err.msg);
	return rec;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

static void write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(__real_write(fd, data, len), (ssize_t)len);
	close(fd);
}

static bool exists(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return lstat(path, &st) == 0;
}

/* The sizes of the directory's *.cast files, added up. */
static uint64_t cast_total(const char *dir)
{
	char cmd[PATH_MAX + 64], line[64];
	uint64_t total = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "find '%s' -maxdepth 1 -name '*.cast' -printf '%%s\\n'", dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p) != NULL)
		total += strtoull(line, NULL, 10);
	assert_int_equal(pclose(p), 0);
	return total;
}

static const char *find_program(const char *name, char *buf, size_t len)
{
	const char *dirs[] = {"/usr/bin", "/usr/local/bin", "/bin"};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(buf, len, "%s/%s", dirs[i], name);
		if (access(buf, X_OK) == 0)
			return buf;
	}
	return NULL;
}

/* ---- reading a recording back ---------------------------------------------- */

/* An independent reader: Python's json module, on a file opened as strict
 * UTF-8. It checks the header, that every line is [number, "o"|"i"|"m", string]
 * and that times never go back, and prints what it read, one item a line:
 * title, sockgate (the extra header key, as sorted JSON), events, kinds, m (a
 * marker, as JSON), o and i (the bytes, hex; a code point below 256 read as
 * that byte, others as UTF-8: exact for data without valid non-ASCII UTF-8). */
static const char checker_py[] =
	"import json, sys\n"
	"def decode(s):\n"
	"    return b''.join(bytes([ord(c)]) if ord(c) < 256 else c.encode('utf-8') for c in s)\n"
	"with open(sys.argv[1], encoding='utf-8', errors='strict', newline='') as f:\n"
	"    lines = f.read().split('\\n')\n"
	"assert lines[-1] == '', 'the last line has no newline'\n"
	"h = json.loads(lines[0])\n"
	"assert h['version'] == 2 and h['width'] == 80 and h['height'] == 24, h\n"
	"assert type(h['timestamp']) is int, h\n"
	"print('title', h['title'])\n"
	"print('sockgate', json.dumps(h['sockgate'], sort_keys=True))\n"
	"print('timestamp', h['timestamp'])\n"
	"o, i, last, kinds = b'', b'', 0, ''\n"
	"for line in lines[1:-1]:\n"
	"    e = json.loads(line)\n"
	"    assert type(e) is list and len(e) == 3, e\n"
	"    t, k, d = e\n"
	"    assert type(t) in (int, float) and t >= last, (t, last)\n"
	"    assert k in ('o', 'i', 'm') and type(d) is str, e\n"
	"    last, kinds = t, kinds + k\n"
	"    if k == 'o': o += decode(d)\n"
	"    elif k == 'i': i += decode(d)\n"
	"    else: print('m', json.dumps(d))\n"
	"print('events', len(kinds))\n"
	"print('kinds', kinds)\n"
	"print('o', o.hex())\n"
	"print('i', i.hex())\n";

struct check {
	char *out; /* the checker's lines */
};

/* Runs the checker on path; skips the test without python3. */
static void check_run(const struct dir *d, const char *path, struct check *c)
{
	char py[PATH_MAX], script[PATH_MAX], cmd[3 * PATH_MAX], *out = NULL;
	size_t len = 0, cap = 0;
	FILE *p;
	int status;

	if (find_program("python3", py, sizeof(py)) == NULL)
		test_skip("python3 is not installed");
	snprintf(script, sizeof(script), "%s/checker.py", d->path);
	write_file(script, checker_py, strlen(checker_py));
	snprintf(cmd, sizeof(cmd), "%s '%s' '%s'", py, script, path);
	p = popen(cmd, "r");
	assert_non_null(p);
	for (;;) {
		size_t n;

		if (cap - len < 65536) {
			cap = cap * 2 + 65536;
			out = realloc(out, cap + 1);
			assert_non_null(out);
		}
		n = fread(out + len, 1, cap - len, p);
		if (n == 0)
			break;
		len += n;
	}
	out[len] = '\0';
	status = pclose(p);
	if (status != 0)
		fail_msg("the JSON checker failed on %s (status %d):\n%s", path, status, out);
	unlink(script);
	c->out = out;
}

/* The value of the n-th line that starts with "key " (n from 0), or NULL. */
static const char *check_get(const struct check *c, const char *key, int n, char *buf, size_t len)
{
	size_t klen = strlen(key);

	for (const char *l = c->out; *l != '\0';) {
		const char *end = strchr(l, '\n');
		size_t llen = end != NULL ? (size_t)(end - l) : strlen(l);

		if (llen > klen && strncmp(l, key, klen) == 0 && l[klen] == ' ' && n-- == 0) {
			llen -= klen + 1;
			if (llen >= len)
				fail_msg("checker line %s too long", key);
			memcpy(buf, l + klen + 1, llen);
			buf[llen] = '\0';
			return buf;
		}
		l += llen + (end != NULL);
	}
	return NULL;
}

static void check_free(struct check *c)
{
	free(c->out);
}

static char *hex(const void *data, size_t len)
{
	const unsigned char *p = data;
	char *s = malloc(2 * len + 1);

	assert_non_null(s);
	for (size_t i = 0; i < len; i++)
		sprintf(s + 2 * i, "%02x", p[i]);
	s[2 * len] = '\0';
	return s;
}

/* Checks that the checker read exactly data as the kind ("o" or "i") stream. */
static void check_stream(const struct check *c, const char *kind, const void *data, size_t len)
{
	size_t cap = 2 * len + 16;
	char *want = hex(data, len), *got = malloc(cap);

	assert_non_null(got);
	assert_non_null(check_get(c, kind, 0, got, cap));
	assert_string_equal(got, want);
	free(want);
	free(got);
}

/* Our own reader, for exact bytes: the data of every event of one kind, with
 * each \u00XX read as the byte XX and literal characters as their bytes
 * (record.h). It knows the writer's layout: [T, "K", "DATA"]. */
static size_t raw_stream(const char *file, size_t file_len, char kind, unsigned char *out,
			 size_t cap)
{
	const char *l = strchr(file, '\n'), *end = file + file_len;
	size_t n = 0;

	assert_non_null(l);
	for (l++; l < end; l = strchr(l, '\n') + 1) {
		const char *p = strstr(l, ", \"");

		assert_non_null(p);
		assert_true(p[4] == '"' && p[5] == ',');
		if (p[3] != kind)
			continue;
		for (p += 8; *p != '"'; p++) {
			unsigned char b = (unsigned char)*p;

			if (b == '\\') {
				switch (*++p) {
				case 'u':
					assert_true(p[1] == '0' && p[2] == '0');
					b = (unsigned char)strtoul((char[]){p[3], p[4], 0}, NULL,
								   16);
					p += 4;
					break;
				case 'n':
					b = '\n';
					break;
				case 'r':
					b = '\r';
					break;
				case 't':
					b = '\t';
					break;
				case 'b':
					b = '\b';
					break;
				case 'f':
					b = '\f';
					break;
				default:
					b = (unsigned char)*p;
					break;
				}
			}
			assert_true(n < cap);
			out[n++] = b;
		}
		assert_true(p[1] == ']' && p[2] == '\n');
	}
	return n;
}

/* ---- the format ------------------------------------------------------------ */

static void header_and_events_are_json(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(1 << 20);
	struct errbuf err;
	struct recording *rec =
		recording_open(r, d->path, BIG, BIG, SESSION, "demo", "alice \"the\" admin",
			       "127.0.0.1:40000", "127.0.0.1:2323", STARTED, T0, &err);
	static const char out1[] = "Welcome\r\n", out2[] = "a\tb\x1b[0m\x7f\"\\", in1[] = "ls\r\n";
	char path[PATH_MAX], buf[512], *file;
	struct check c;

	assert_non_null(rec);
	recording_data(rec, false, out1, strlen(out1), T0 + 412);
	recording_data(rec, true, in1, strlen(in1), T0 + 1873);
	recording_data(rec, false, out2, strlen(out2), T0 + 2900);
	/* Another thread's clock may lag a little: times still never go back. */
	recording_data(rec, true, "x", 1, T0 + 2500);
	assert_int_equal(recording_dropped(rec), 0);
	snprintf(path, sizeof(path), "%s/" STAMP "-" SESSION ".cast", d->path);
	assert_string_equal(recording_path(rec), path);
	recording_close(rec, "client closed \"now\"\nend", T0 + 5000);
	recorder_free(r); /* writes what is queued */

	check_run(d, path, &c);
	assert_string_equal(check_get(&c, "title", 0, buf, sizeof(buf)),
			    "alice \"the\" admin@demo from 127.0.0.1:40000 to 127.0.0.1:2323");
	assert_string_equal(check_get(&c, "sockgate", 0, buf, sizeof(buf)),
			    "{\"client\": \"127.0.0.1:40000\", \"gateway\": \"demo\", \"session\": "
			    "\"" SESSION "\", \"upstream\": \"127.0.0.1:2323\", \"user\": "
			    "\"alice \\\"the\\\" admin\"}");
	assert_string_equal(check_get(&c, "timestamp", 0, buf, sizeof(buf)), "1765095300");
	assert_string_equal(check_get(&c, "kinds", 0, buf, sizeof(buf)), "oioim");
	check_stream(&c, "o", "Welcome\r\na\tb\x1b[0m\x7f\"\\", strlen(out1) + strlen(out2));
	check_stream(&c, "i", "ls\r\nx", 5);
	assert_string_equal(check_get(&c, "m", 0, buf, sizeof(buf)),
			    "\"session closed: client closed \\\"now\\\"\\nend\"");
	check_free(&c);

	/* The layout itself: times in seconds with milliseconds, relative to the
	 * open, the lagging chunk at the previous time, short escapes. */
	file = slurp(path, NULL);
	assert_non_null(strstr(file, "\n[0.412, \"o\", \"Welcome\\r\\n\"]\n"));
	assert_non_null(strstr(file, "\n[1.873, \"i\", \"ls\\r\\n\"]\n"));
	assert_non_null(strstr(file, "\n[2.900, \"o\", \"a\\tb\\u001b[0m\\u007f\\\"\\\\\"]\n"));
	assert_non_null(strstr(file, "\n[2.900, \"i\", \"x\"]\n"));
	assert_non_null(strstr(file, "\n[5.000, \"m\", \"session closed: "));
	free(file);
}

/* What a telnet-style session looks like: the client sees the banner, its
 * own echo from the upstream, output with colours and UTF-8 characters split
 * across chunks by the relay. */
static const char *const telnet_out[] = {
	"sockgate demo server\r\nlogin ok\r\n$ ",
	"l",
	"s",
	"\r\n",
	"caf\xc3",
	"\xa9 10 \xe2\x82",
	"\xac\r\n\x1b[1mbold\x1b[0m \xf0\x9f\x98",
	"\x80\r\n$ ",
	"exit\r\nbye\r\n",
};
static const char *const telnet_in[] = {"l", "s", "\r\n", "exit\r\n"};

static size_t telnet_session(const struct dir *d, char *out, size_t cap, char *path, size_t len)
{
	struct recorder *r = new_recorder(1 << 20);
	struct recording *rec = open_rec(r, d->path, BIG, BIG, SESSION);
	uint64_t now = T0;
	size_t n = 0;

	for (size_t i = 0; i < sizeof(telnet_out) / sizeof(telnet_out[0]); i++) {
		size_t l = strlen(telnet_out[i]);

		if (i >= 1 && i - 1 < sizeof(telnet_in) / sizeof(telnet_in[0]))
			recording_data(rec, true, telnet_in[i - 1], strlen(telnet_in[i - 1]),
				       now += 150);
		recording_data(rec, false, telnet_out[i], l, now += 20);
		assert_true(n + l <= cap);
		memcpy(out + n, telnet_out[i], l);
		n += l;
	}
	snprintf(path, len, "%s", recording_path(rec));
	recording_close(rec, "client closed", now + 10);
	recorder_flush(r);
	recorder_free(r);
	return n;
}

static void asciinema_prints_what_the_client_saw(void **state)
{
	struct dir *d = *state;
	char asciinema[PATH_MAX], path[PATH_MAX], want[1024], got[2048];
	size_t n, m;

	if (find_program("asciinema", asciinema, sizeof(asciinema)) == NULL ||
	    access("/usr/bin/setsid", X_OK) != 0)
		test_skip("asciinema (or setsid) is not installed");
	n = telnet_session(d, want, sizeof(want), path, sizeof(path));
	m = run_asciinema(asciinema, "cat", NULL, path, got, sizeof(got));
	assert_int_equal(m, n);
	assert_memory_equal(got, want, n);
	/* And it replays (an idle limit keeps it short). */
	m = run_asciinema(asciinema, "play", "--idle-time-limit=0.01", path, got, sizeof(got));
	assert_int_equal(m, n);
	assert_memory_equal(got, want, n);
}

static void utf8_stays_whole_across_chunks(void **state)
{
	struct dir *d = *state;
	char path[PATH_MAX], want[1024], *file;
	unsigned char raw[1024];
	size_t n, file_len;
	struct check c;

	n = telnet_session(d, want, sizeof(want), path, sizeof(path));
	file = slurp(path, &file_len);
	/* The split characters are written whole, as UTF-8, never escaped. */
	assert_non_null(strstr(file, "\"caf\"]\n"));
	assert_non_null(strstr(file, "\"\xc3\xa9 10 \"]\n"));
	assert_non_null(strstr(file, "\"\xe2\x82\xac\\r\\n\\u001b[1mbold\\u001b[0m \"]\n"));
	assert_non_null(strstr(file, "\"\xf0\x9f\x98\x80\\r\\n$ \"]\n"));
	assert_null(strstr(file, "\\u00c3"));
	assert_null(strstr(file, "\\u00e2"));
	assert_int_equal(raw_stream(file, file_len, 'o', raw, sizeof(raw)), n);
	assert_memory_equal(raw, want, n);
	free(file);
	/* Valid JSON, and the text is what it was. */
	check_run(d, path, &c);
	check_free(&c);
}

static void utf8_tail_at_the_end_is_escaped(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(1 << 20);
	struct recording *rec = open_rec(r, d->path, BIG, BIG, SESSION);
	char path[PATH_MAX], *file;
	unsigned char raw[64];
	size_t len;
	struct check c;

	recording_data(rec, false, "ab\xe2\x82", 4, T0 + 1);
	recording_data(rec, true, "\xf0\x9f", 2, T0 + 2);
	snprintf(path, sizeof(path), "%s", recording_path(rec));
	recording_close(rec, "upstream closed", T0 + 3);
	recorder_free(r);
	file = slurp(path, &len);
	assert_non_null(strstr(file, "\n[0.001, \"o\", \"ab\"]\n"));
	assert_non_null(strstr(file, "\n[0.003, \"o\", \"\\u00e2\\u0082\"]\n"));
	assert_non_null(strstr(file, "\n[0.003, \"i\", \"\\u00f0\\u009f\"]\n"));
	assert_int_equal(raw_stream(file, len, 'o', raw, sizeof(raw)), 4);
	assert_memory_equal(raw, "ab\xe2\x82", 4);
	free(file);
	check_run(d, path, &c);
	check_stream(&c, "o", "ab\xe2\x82", 4);
	check_stream(&c, "i", "\xf0\x9f", 2);
	check_free(&c);
}

static void binary_bytes_become_escapes(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(1 << 20);
	struct recording *rec = open_rec(r, d->path, BIG, BIG, SESSION);
	/* Not UTF-8: an overlong NUL, a surrogate, F5, above U+10FFFF, a lone
	 * continuation byte, a lead byte without its continuation. */
	static const unsigned char invalid[] = {0xc0, 0x80, 0xed, 0xa0, 0x80, 0xf5, 0x80,
						0xf4, 0x90, 0x80, 0x80, 0x80, 0xc3, 'x'};
	unsigned char all[256], want[256 + sizeof(invalid)];
	char path[PATH_MAX], *file;
	struct check c;

	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	memcpy(want, all, 256);
	memcpy(want + 256, invalid, sizeof(invalid));
	recording_data(rec, false, all, 256, T0 + 1);
	recording_data(rec, false, invalid, sizeof(invalid), T0 + 2);
	recording_data(rec, true, all, 256, T0 + 3);
	snprintf(path, sizeof(path), "%s", recording_path(rec));
	recording_close(rec, "client closed", T0 + 4);
	recorder_free(r);

	file = slurp(path, NULL);
	assert_non_null(strstr(file, "\"\\u0000\\u0001"));
	assert_non_null(strstr(file, "\\u00fe\\u00ff\"]\n"));
	assert_non_null(strstr(file, "\"\\u00c0\\u0080\\u00ed\\u00a0\\u0080\\u00f5\\u0080\\u00f4"
				     "\\u0090\\u0080\\u0080\\u0080\\u00c3x\"]\n"));
	free(file);
	/* A JSON parser gets every byte back as the code point of its value. */
	check_run(d, path, &c);
	check_stream(&c, "o", want, sizeof(want));
	check_stream(&c, "i", all, 256);
	check_free(&c);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Random bytes in random chunks, both ways, with one chunk bigger than the
 * writer's slice: every line valid JSON, every byte back (our reader). */
static void random_binary_round_trips(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(8 << 20);
	struct recording *rec = open_rec(r, d->path, BIG, BIG, SESSION);
	size_t total = 256 * 1024, n[2] = {0, 0}, len;
	unsigned char *data[2], *back = malloc(total);
	char path[PATH_MAX], *file;
	uint64_t now = T0;
	struct check c;

	data[0] = malloc(total);
	data[1] = malloc(total);
	assert_non_null(back);
	assert_non_null(data[0]);
	assert_non_null(data[1]);
	while (n[0] + n[1] < total) {
		int way = (int)(rng() & 1);
		size_t chunk = n[0] + n[1] == 0 ? 40000 : 1 + rng() % 3000;
		unsigned char *p = data[way] + n[way];

		if (chunk > total - n[0] - n[1])
			chunk = total - n[0] - n[1];
		for (size_t i = 0; i < chunk; i++) {
			uint64_t x = rng();

			/* Some runs of valid UTF-8, so that it passes through too. */
			p[i] = (x & 0x300) != 0 ? (unsigned char)x
						: (unsigned char)"\xe2\x82\xac"[i % 3];
		}
		recording_data(rec, way == 1, p, chunk, now += rng() % 50);
		n[way] += chunk;
	}
	snprintf(path, sizeof(path), "%s", recording_path(rec));
	recording_close(rec, "client closed", now);
	recorder_free(r);

	file = slurp(path, &len);
	assert_int_equal(raw_stream(file, len, 'o', back, total), n[0]);
	assert_memory_equal(back, data[0], n[0]);
	assert_int_equal(raw_stream(file, len, 'i', back, total), n[1]);
	assert_memory_equal(back, data[1], n[1]);
	free(file);
	check_run(d, path, &c);
	check_free(&c);
	free(data[0]);
	free(data[1]);
	free(back);
}

/* ---- caps ------------------------------------------------------------------ */

static void size_cap_stops_with_a_marker(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(1 << 20);
	struct recording *rec = open_rec(r, d->path, 4096, BIG, SESSION);
	char path[PATH_MAX], chunk[100], buf[256], want[256], *all = malloc(10000);
	unsigned char raw[10000];
	size_t sent = 0, len, got;
	struct stat st;
	char *file;

	assert_non_null(all);
	for (int i = 0; i < 60; i++) {
		memset(chunk, 'a' + i % 26, sizeof(chunk));
		recording_data(rec, false, chunk, sizeof(chunk), T0 + (uint64_t)i);
		memcpy(all + sent, chunk, sizeof(chunk));
		sent += sizeof(chunk);
	}
	recorder_flush(r);
	assert_int_equal(recording_state(rec), RECORDING_STOPPED);
	/* Later data is counted, not written. */
	for (int i = 0; i < 40; i++) {
		memset(chunk, 'A' + i % 26, sizeof(chunk));
		recording_data(rec, i % 2 == 0, chunk, sizeof(chunk), T0 + 100);
		sent += sizeof(chunk);
	}
	assert_int_equal(recording_dropped(rec), 0);
	snprintf(path, sizeof(path), "%s", recording_path(rec));
	recording_close(rec, "client closed", T0 + 200);
	recorder_free(r);

	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size <= 4096);
	assert_true(st.st_size > 4096 - 512 - 100); /* the last chunk was cut to fit */
	file = slurp(path, &len);
	got = raw_stream(file, len, 'o', raw, sizeof(raw));
	assert_memory_equal(raw, all, got);
	assert_int_equal(raw_stream(file, len, 'i', raw, sizeof(raw)), 0);
	free(file);
	{
		struct check c;

		check_run(d, path, &c);
		assert_string_equal(check_get(&c, "m", 0, buf, sizeof(buf)),
				    "\"recording stopped: size cap\"");
		snprintf(
			want, sizeof(want),
			"\"session closed (%zu bytes not recorded after the stop): client closed\"",
			sent - got);
		assert_string_equal(check_get(&c, "m", 1, buf, sizeof(buf)), want);
		assert_null(check_get(&c, "m", 2, buf, sizeof(buf)));
		check_free(&c);
	}
	free(all);
}

static void make_old(const struct dir *d, const char *name, size_t size, time_t age_s)
{
	char path[PATH_MAX], *data = malloc(size);
	struct timespec ts[2];

	assert_non_null(data);
	memset(data, 'z', size);
	snprintf(path, sizeof(path), "%s/%s", d->path, name);
	write_file(path, data, size);
	free(data);
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= age_s;
	ts[1] = ts[0];
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void directory_cap_removes_oldest_first(void **state)
{
	struct dir *d = *state;
	const uint64_t max_total = 6000;
	struct recorder *r;
	struct recording *a, *b;
	char chunk[1000], a_name[PATH_MAX], b_name[PATH_MAX], buf[256];
	struct check c;

	/* Older by modification, later by name: the age decides. */
	make_old(d, "z-old.cast", 2500, 300);
	make_old(d, "a-newer.cast", 100, 200);
	make_old(d, "notes.txt", 5000, 400); /* not a recording: neither counted nor removed */
	memset(chunk, '.', sizeof(chunk));
	r = new_recorder(1 << 20);

	a = open_rec(r, d->path, BIG, max_total, "aaaa");
	recording_data(a, false, chunk, sizeof(chunk), T0 + 1);
	recorder_flush(r);
	assert_true(exists(d->path, "z-old.cast"));
	assert_true(exists(d->path, "a-newer.cast"));

	/* A second recording passes the cap: the oldest goes, and that is enough. */
	b = open_rec(r, d->path, BIG, max_total, "bbbb");
	recording_data(b, false, chunk, sizeof(chunk), T0 + 2);
	recorder_flush(r);
	assert_false(exists(d->path, "z-old.cast"));
	assert_true(exists(d->path, "a-newer.cast"));
	assert_int_equal(recording_state(b), RECORDING_ACTIVE);

	/* It grows on: the other closed one goes; the open one never does, so b
	 * stops at the cap. */
	for (int i = 0; i < 4; i++)
		recording_data(b, false, chunk, sizeof(chunk), T0 + 3);
	recorder_flush(r);
	assert_false(exists(d->path, "a-newer.cast"));
	assert_int_equal(recording_state(b), RECORDING_STOPPED);
	assert_int_equal(recording_state(a), RECORDING_ACTIVE);
	snprintf(a_name, sizeof(a_name), "%s", recording_path(a));
	snprintf(b_name, sizeof(b_name), "%s", recording_path(b));
	recording_close(a, "client closed", T0 + 4);
	recording_close(b, "client closed", T0 + 4);
	recorder_free(r);

	assert_true(access(a_name, F_OK) == 0);
	assert_true(exists(d->path, "notes.txt"));
	assert_true(cast_total(d->path) <= max_total);
	check_run(d, b_name, &c);
	assert_string_equal(check_get(&c, "m", 0, buf, sizeof(buf)),
			    "\"recording stopped: directory cap\"");
	check_free(&c);
	check_run(d, a_name, &c);
	assert_string_equal(check_get(&c, "m", 0, buf, sizeof(buf)),
			    "\"session closed: client closed\"");
	check_free(&c);
}

/* A new recording makes room too, before its file exists. */
static void directory_cap_applies_before_a_new_file(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(1 << 20);
	struct recording *rec;

	make_old(d, "old.cast", 5000, 100);
	rec = open_rec(r, d->path, BIG, 5200, "cccc");
	recorder_flush(r);
	assert_false(exists(d->path, "old.cast"));
	assert_int_equal(recording_state(rec), RECORDING_ACTIVE);
	recording_close(rec, "client closed", T0 + 1);
	recorder_free(r);
	assert_true(cast_total(d->path) <= 5200);
}

/* ---- the queue ------------------------------------------------------------- */

static void full_queue_drops_and_marks(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(64 * 1024);
	struct recording *rec;
	char chunk[4096], path[PATH_MAX], buf[256], want[64], *all = malloc(64 * 4096 + 100);
	unsigned char *raw = malloc(64 * 4096 + 100);
	size_t kept = 0, len;
	uint64_t dropped;
	char *file;
	struct check c;

	assert_non_null(all);
	assert_non_null(raw);
	/* The writer stops at the file's creation: nothing leaves the queue. */
	gate_set(true);
	rec = open_rec(r, d->path, BIG, BIG, SESSION);
	for (int i = 0; i < 64; i++) {
		uint64_t before = recording_dropped(rec);

		memset(chunk, 'a' + i % 26, sizeof(chunk));
		recording_data(rec, false, chunk, sizeof(chunk), T0 + (uint64_t)i);
		if (recording_dropped(rec) == before) {
			memcpy(all + kept, chunk, sizeof(chunk));
			kept += sizeof(chunk);
		}
	}
	/* Each call returned with the writer held: the queue took what it could. */
	dropped = recording_dropped(rec);
	assert_true(kept > 0 && kept <= 64 * 1024);
	assert_int_equal(dropped + kept, 64 * 4096);
	gate_set(false);
	recorder_flush(r);
	/* The next chunk is queued again, after the gap's marker. */
	recording_data(rec, true, "after", 5, T0 + 100);
	memcpy(all + kept, "after", 5);
	snprintf(path, sizeof(path), "%s", recording_path(rec));
	recording_close(rec, "client closed", T0 + 101);
	recorder_free(r);

	file = slurp(path, &len);
	assert_int_equal(raw_stream(file, len, 'o', raw, 64 * 4096), kept);
	assert_memory_equal(raw, all, kept);
	assert_int_equal(raw_stream(file, len, 'i', raw, 64 * 4096), 5);
	free(file);
	check_run(d, path, &c);
	snprintf(want, sizeof(want), "\"bytes dropped: %llu\"", (unsigned long long)dropped);
	assert_string_equal(check_get(&c, "m", 0, buf, sizeof(buf)), want);
	assert_string_equal(check_get(&c, "kinds", 0, buf, sizeof(buf)) + kept / 4096, "mim");
	check_free(&c);
	free(all);
	free(raw);
}

/* ---- the file -------------------------------------------------------------- */

static void file_is_private_and_never_replaced(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(1 << 20);
	struct recording *rec, *dup, *link, *odd;
	char path[PATH_MAX], victim[PATH_MAX], *text;
	mode_t old = umask(0); /* 0600 must come from the code, not the umask */
	struct stat st;

	rec = open_rec(r, d->path, BIG, BIG, SESSION);
	/* Names taken already: a file, and a symbolic link to another file. */
	snprintf(path, sizeof(path), "%s/" STAMP "-dup.cast", d->path);
	write_file(path, "old", 3);
	snprintf(victim, sizeof(victim), "%s/victim", d->path);
	write_file(victim, "keep", 4);
	snprintf(path, sizeof(path), "%s/" STAMP "-link.cast", d->path);
	assert_int_equal(symlink(victim, path), 0);
	dup = open_rec(r, d->path, BIG, BIG, "dup");
	link = open_rec(r, d->path, BIG, BIG, "link");
	/* An id is no path. */
	odd = open_rec(r, d->path, BIG, BIG, "../../x/y z");
	recorder_flush(r);
	umask(old);

	snprintf(path, sizeof(path), "%s/" STAMP "-" SESSION ".cast", d->path);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(recording_state(rec), RECORDING_ACTIVE);
	assert_int_equal(recording_state(dup), RECORDING_FAILED);
	assert_int_equal(recording_state(link), RECORDING_FAILED);
	text = slurp(recording_path(dup), NULL);
	assert_string_equal(text, "old");
	free(text);
	text = slurp(victim, NULL);
	assert_string_equal(text, "keep");
	free(text);
	snprintf(path, sizeof(path), "%s/" STAMP "-.._.._x_y_z.cast", d->path);
	assert_string_equal(recording_path(odd), path);
	assert_int_equal(recording_state(odd), RECORDING_ACTIVE);
	assert_int_equal(stat(path, &st), 0);
	/* A failed recording takes data and a close like any other. */
	recording_data(dup, false, "x", 1, T0 + 1);
	recording_close(rec, "client closed", T0 + 1);
	recording_close(dup, "client closed", T0 + 1);
	recording_close(link, "client closed", T0 + 1);
	recording_close(odd, "client closed", T0 + 1);
	recorder_free(r);
}

static void missing_directory_is_a_clear_error(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(1 << 20);
	char path[PATH_MAX], want[PATH_MAX + 64];
	struct errbuf err = {{0}};

	snprintf(path, sizeof(path), "%s/missing", d->path);
	assert_null(recording_open(r, path, BIG, BIG, SESSION, "demo", "alice", "127.0.0.1:1",
				   "127.0.0.1:2", STARTED, T0, &err));
	snprintf(want, sizeof(want), "recording directory %s: No such file or directory", path);
	assert_string_equal(err.msg, want);

	snprintf(path, sizeof(path), "%s/file", d->path);
	write_file(path, "", 0);
	assert_null(recording_open(r, path, BIG, BIG, SESSION, "demo", "alice", "127.0.0.1:1",
				   "127.0.0.1:2", STARTED, T0, &err));
	snprintf(want, sizeof(want), "recording directory %s is not a directory", path);
	assert_string_equal(err.msg, want);

	if (geteuid() != 0) { /* root may write anywhere */
		snprintf(path, sizeof(path), "%s/ro", d->path);
		assert_int_equal(mkdir(path, 0500), 0);
		assert_null(recording_open(r, path, BIG, BIG, SESSION, "demo", "alice",
					   "127.0.0.1:1", "127.0.0.1:2", STARTED, T0, &err));
		snprintf(want, sizeof(want),
			 "recording directory %s is not writable: Permission denied", path);
		assert_string_equal(err.msg, want);
	}
	recorder_free(r);
}

/* ---- write errors ---------------------------------------------------------- */

static void short_writes_and_eintr_lose_nothing(void **state)
{
	struct dir *d = *state;
	char path[PATH_MAX], want[1024], *file;
	unsigned char raw[1024];
	size_t n, len;

	pthread_mutex_lock(&gate_lock);
	short_writes = true;
	pthread_mutex_unlock(&gate_lock);
	n = telnet_session(d, want, sizeof(want), path, sizeof(path));
	file = slurp(path, &len);
	assert_int_equal(raw_stream(file, len, 'o', raw, sizeof(raw)), n);
	assert_memory_equal(raw, want, n);
	free(file);
}

static void disk_full_fails_once_and_keeps_whole_lines(void **state)
{
	struct dir *d = *state;
	struct recorder *r = new_recorder(1 << 20);
	struct recording *rec;
	char log_path[PATH_MAX], path[PATH_MAX], chunk[200], *log, *p;
	int saved, fd, lines = 0;
	struct stat st;
	struct check c;

	snprintf(log_path, sizeof(log_path), "%s/stderr", d->path);
	pthread_mutex_lock(&gate_lock);
	fail_after = 1000;
	pthread_mutex_unlock(&gate_lock);
	memset(chunk, 'q', sizeof(chunk));
	/* The log lines go to stderr: into a file for the length of the test. */
	fflush(stderr);
	saved = dup(2);
	fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	close(fd);
	rec = open_rec(r, d->path, BIG, BIG, SESSION);
	for (int i = 0; i < 20; i++)
		recording_data(rec, false, chunk, sizeof(chunk), T0 + (uint64_t)i);
	recorder_flush(r);
	assert_int_equal(recording_state(rec), RECORDING_FAILED);
	recording_data(rec, false, chunk, sizeof(chunk), T0 + 30);
	snprintf(path, sizeof(path), "%s", recording_path(rec));
	recording_close(rec, "client closed", T0 + 40);
	recorder_free(r);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);

	log = slurp(log_path, NULL);
	for (p = log; (p = strstr(p, "recording failed")) != NULL; p++)
		lines++;
	if (lines != 1 || strstr(log, "No space left on device") == NULL)
		fail_msg("want one \"recording failed\" line with ENOSPC, got:\n%s", log);
	free(log);
	/* What was written before the error is whole lines. */
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size <= 1000);
	check_run(d, path, &c);
	check_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(header_and_events_are_json, setup, teardown),
		cmocka_unit_test_setup_teardown(asciinema_prints_what_the_client_saw, setup,
						teardown),
		cmocka_unit_test_setup_teardown(utf8_stays_whole_across_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(utf8_tail_at_the_end_is_escaped, setup, teardown),
		cmocka_unit_test_setup_teardown(binary_bytes_become_escapes, setup, teardown),
		cmocka_unit_test_setup_teardown(random_binary_round_trips, setup, teardown),
		cmocka_unit_test_setup_teardown(size_cap_stops_with_a_marker, setup, teardown),
		cmocka_unit_test_setup_teardown(directory_cap_removes_oldest_first, setup,
						teardown),
		cmocka_unit_test_setup_teardown(directory_cap_applies_before_a_new_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(full_queue_drops_and_marks, setup, teardown),
		cmocka_unit_test_setup_teardown(file_is_private_and_never_replaced, setup,
						teardown),
		cmocka_unit_test_setup_teardown(missing_directory_is_a_clear_error, setup,
						teardown),
		cmocka_unit_test_setup_teardown(short_writes_and_eintr_lose_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(disk_full_fails_once_and_keeps_whole_lines, setup,
						teardown),
	};

	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
