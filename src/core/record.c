/* record: the recorder's queue and writer thread, the asciicast v2 encoding, and
 * the caps on each recording and on each directory (record.h has the format).
 * The callers' side only copies chunks into the queue; all disk work is here. */
#include "record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Room kept in every file, and per open file in its directory's total, for the
 * final markers (at most two lines of RECORD_MARKER_LINE). */
#define RECORD_RESERVE 512
/* A marker's text, encoded; with the opening and closing of its line. */
#define RECORD_MARKER_MAX  200
#define RECORD_MARKER_LINE (RECORD_MARKER_MAX + 40)
/* The writer encodes big chunks in slices of this: its buffers stay small. */
#define RECORD_SLICE 16384
/* The opening of an event line ("[18446744073709551.615, "o", "") fits here. */
#define RECORD_PREFIX_MAX 48
#define RECORD_FIELD_MAX  256 /* one header value, encoded */
#define RECORD_REASON_MAX 160
#define RECORD_ID_MAX     64
#define RECORD_SUFFIX     ".cast"

_Static_assert(2 * RECORD_MARKER_LINE <= RECORD_RESERVE, "the final markers fit the reserve");

enum record_kind {
	RECORD_OPEN = 0,
	RECORD_OUTPUT, /* upstream -> client: "o" */
	RECORD_INPUT,  /* client -> upstream: "i" */
	RECORD_CLOSE,
};

struct record_item {
	struct record_item *next;
	struct recording *rec;
	enum record_kind kind;
	uint64_t t_ms;           /* since the recording started */
	uint64_t dropped_before; /* bytes the full queue refused since the previous item */
	uint64_t unrecorded;     /* RECORD_CLOSE: bytes the caller counted after the stop */
	size_t len;
	unsigned char data[]; /* the chunk; RECORD_CLOSE: the reason */
};

/* A recording no longer written: one the directory cap may remove. */
struct record_file {
	char *name;
	uint64_t size;
	struct timespec mtime;
};

/* A directory the writer writes to; only the writer thread touches it. */
struct record_dir {
	struct record_dir *next;
	char *path;
	int fd;
	dev_t dev;
	ino_t ino;
	uint64_t total; /* bytes of its *.cast files, the open ones included */
	uint64_t max_total;
	struct record_file *closed; /* oldest modification first */
	size_t n_closed, cap_closed;
	struct recording *open; /* through dir_next */
	size_t n_open;
	bool rescan; /* a file it meant to remove had gone: the total is not to be trusted */
};

struct recording {
	struct recorder *r;
	/* Set by recording_open(), read-only after. */
	char *path, *name, *directory, *session_id, *gateway, *user, *client, *upstream;
	uint64_t max_bytes, max_total;
	time_t started;
	struct record_item *close_item; /* allocated up front: closing cannot fail */
	/* The caller's thread only. */
	uint64_t start_ms;
	uint64_t dropped;         /* all bytes the full queue refused */
	uint64_t dropped_pending; /* not yet reported to the writer */
	uint64_t unrecorded;      /* bytes seen after the recording stopped */
	/* The writer's only. */
	struct record_dir *dir; /* non-NULL while the file is open */
	struct recording *dir_next;
	int fd;
	uint64_t size;
	uint64_t last_ms;
	uint64_t discarded; /* bytes that reached the writer after the stop */
	unsigned char carry[2][4];
	size_t carry_len[2];
	/* The writer's, read by the caller (__atomic). */
	int state;
};

struct recorder {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work;    /* the writer waits for items */
	pthread_cond_t flushed; /* recorder_flush() waits for the writer */
	struct record_item *head, **tail;
	size_t queue_bytes;
	size_t queued;     /* bytes of the items queued or being written (__atomic) */
	uint64_t n_queued; /* items ever queued ... */
	uint64_t n_done;   /* ... and written */
	bool waiting, stopping;
	/* The writer's. */
	struct record_dir *dirs;
	char *out; /* an encoded line: RECORD_PREFIX_MAX, then the text */
	size_t out_cap;
	unsigned char *in; /* a carry and a slice */
};

static size_t item_size(const struct record_item *it)
{
	return sizeof(*it) + it->len;
}

/* ---- encoding -------------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at p (1 to 4), or 0 if the bytes there
 * are not one. When avail ends inside a sequence whose bytes are valid so far:
 * 0, and *partial. */
static size_t utf8_len(const unsigned char *p, size_t avail, bool *partial)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n;

	*partial = false;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if (i >= avail) {
			*partial = true;
			return 0;
		}
		if (p[i] < lo || p[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
	}
	return n;
}

/* Writes in[0..len) into out as the inside of a JSON string (record.h says
 * how), stopping before a character or escape that would pass out_cap. With
 * hold, a valid but incomplete UTF-8 sequence at the end is left for the next
 * chunk; without, its bytes are escaped. Returns the bytes of in consumed and
 * stores the bytes written in *out_len. */
static size_t json_escape(const unsigned char *in, size_t len, bool hold, char *out, size_t out_cap,
			  size_t *out_len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, o = 0;

	while (i < len) {
		unsigned char c = in[i];
		bool partial;
		size_t n = utf8_len(in + i, len - i, &partial);
		char esc = 0;

		if (partial && hold)
			break;
		if (n > 1) {
			if (out_cap - o < n)
				break;
			memcpy(out + o, in + i, n);
			o += n;
			i += n;
			continue;
		}
		switch (c) {
		case '"':
			esc = '"';
			break;
		case '\\':
			esc = '\\';
			break;
		case '\b':
			esc = 'b';
			break;
		case '\f':
			esc = 'f';
			break;
		case '\n':
			esc = 'n';
			break;
		case '\r':
			esc = 'r';
			break;
		case '\t':
			esc = 't';
			break;
		}
		if (esc != 0) {
			if (out_cap - o < 2)
				break;
			out[o++] = '\\';
			out[o++] = esc;
		} else if (n == 1 && c >= 0x20 && c != 0x7f) {
			if (out_cap - o < 1)
				break;
			out[o++] = (char)c;
		} else {
			if (out_cap - o < 6)
				break;
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[c >> 4];
			out[o + 5] = hex[c & 15];
			o += 6;
		}
		i++;
	}
	*out_len = o;
	return i;
}

/* Appends s as a JSON string (or null) of at most RECORD_FIELD_MAX encoded bytes. */
static size_t put_string(char *out, size_t o, const char *s)
{
	size_t n;

	if (s == NULL) {
		memcpy(out + o, "null", 4);
		return o + 4;
	}
	out[o++] = '"';
	json_escape((const unsigned char *)s, strlen(s), false, out + o, RECORD_FIELD_MAX, &n);
	o += n;
	out[o++] = '"';
	return o;
}

static size_t put(char *out, size_t o, const char *s)
{
	size_t n = strlen(s);

	memcpy(out + o, s, n);
	return o + n;
}

/* The header line into out (at least 8 KiB); returns its length. */
static size_t format_header(const struct recording *rec, char *out)
{
	char title[1024], num[32];
	size_t o = 0;

	snprintf(title, sizeof(title), "%s%s%s from %s to %s", rec->user != NULL ? rec->user : "",
		 rec->user != NULL ? "@" : "", rec->gateway, rec->client,
		 rec->upstream != NULL ? rec->upstream : "?");
	snprintf(num, sizeof(num), "%lld", (long long)rec->started);
	o = put(out, o, "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": ");
	o = put(out, o, num);
	o = put(out, o, ", \"title\": ");
	o = put_string(out, o, title);
	o = put(out, o, ", \"sockgate\": {\"session\": ");
	o = put_string(out, o, rec->session_id);
	o = put(out, o, ", \"gateway\": ");
	o = put_string(out, o, rec->gateway);
	o = put(out, o, ", \"user\": ");
	o = put_string(out, o, rec->user);
	o = put(out, o, ", \"client\": ");
	o = put_string(out, o, rec->client);
	o = put(out, o, ", \"upstream\": ");
	o = put_string(out, o, rec->upstream);
	o = put(out, o, "}}\n");
	return o;
}

/* The opening of an event line, "[T, "K", "", into buf; returns its length. */
static size_t format_prefix(char buf[RECORD_PREFIX_MAX], uint64_t t_ms, char kind)
{
	return (size_t)snprintf(buf, RECORD_PREFIX_MAX, "[%" PRIu64 ".%03u, \"%c\", \"",
				t_ms / 1000, (unsigned)(t_ms % 1000), kind);
}

/* ---- the writer: directories ----------------------------------------------- */

static void dir_path(const struct record_dir *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", d->path, name);
}

static int file_older(const void *a, const void *b)
{
	const struct record_file *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int dir_add_closed(struct record_dir *d, const char *name, uint64_t size,
			  struct timespec mtime)
{
	struct record_file *f;

	if (d->n_closed == d->cap_closed) {
		size_t cap = d->cap_closed != 0 ? 2 * d->cap_closed : 64;

		f = realloc(d->closed, cap * sizeof(*f));
		if (f == NULL)
			return -1;
		d->closed = f;
		d->cap_closed = cap;
	}
	f = &d->closed[d->n_closed];
	f->name = strdup(name);
	if (f->name == NULL)
		return -1;
	f->size = size;
	f->mtime = mtime;
	d->n_closed++;
	return 0;
}

static void dir_clear_closed(struct record_dir *d)
{
	for (size_t i = 0; i < d->n_closed; i++)
		free(d->closed[i].name);
	d->n_closed = 0;
}

static bool dir_is_open(const struct record_dir *d, const char *name)
{
	for (const struct recording *rec = d->open; rec != NULL; rec = rec->dir_next)
		if (strcmp(rec->name, name) == 0)
			return true;
	return false;
}

/* Reads which recordings the directory holds and their total: once when the
 * writer first meets it, and when its idea of them proved wrong, never per
 * chunk. A file that cannot be listed is not counted (nor ever removed). */
static void dir_scan(struct record_dir *d)
{
	size_t suffix = strlen(RECORD_SUFFIX);
	struct dirent *e;
	DIR *dir = NULL;
	int fd;

	dir_clear_closed(d);
	d->total = 0;
	for (const struct recording *rec = d->open; rec != NULL; rec = rec->dir_next)
		d->total += rec->size;
	d->rescan = false;
	fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		log_msg(LOG_ERR, "cannot list recording directory %s: %s", d->path,
			strerror(errno));
		return;
	}
	while ((e = readdir(dir)) != NULL) {
		size_t n = strlen(e->d_name);
		struct stat st;

		if (n <= suffix || strcmp(e->d_name + n - suffix, RECORD_SUFFIX) != 0 ||
		    dir_is_open(d, e->d_name))
			continue;
		if (fstatat(d->fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (dir_add_closed(d, e->d_name, (uint64_t)st.st_size, st.st_mtim) < 0)
			break;
		d->total += (uint64_t)st.st_size;
	}
	closedir(dir);
	if (d->n_closed > 1)
		qsort(d->closed, d->n_closed, sizeof(*d->closed), file_older);
}

static uint64_t dir_room(const struct record_dir *d)
{
	uint64_t used = d->total + (uint64_t)d->n_open * RECORD_RESERVE;

	return d->max_total > used ? d->max_total - used : 0;
}

/* Removes closed recordings, oldest first, until need more bytes fit under the
 * directory's cap or none is left. */
static void dir_make_room(struct record_dir *d, uint64_t need)
{
	char path[PATH_MAX];

	while (dir_room(d) < need && (d->n_closed > 0 || d->rescan)) {
		struct record_file f;

		if (d->rescan) {
			dir_scan(d);
			continue;
		}
		f = d->closed[0];
		memmove(d->closed, d->closed + 1, --d->n_closed * sizeof(*d->closed));
		dir_path(d, f.name, path, sizeof(path));
		if (unlinkat(d->fd, f.name, 0) == 0) {
			d->total -= f.size < d->total ? f.size : d->total;
			log_event(LOG_INFO, LOG_EV_GENERIC, "recording removed",
				  LOG_FIELDS({"SOCKGATE_RECORDING", path},
					     {"REASON", "directory total over max_total_bytes"}));
		} else if (errno == ENOENT) {
			/* Someone else removed it: what else changed? */
			d->rescan = true;
		} else {
			/* It stays, and its bytes stay counted: the cap then
			 * stops recordings rather than pass over it. */
			log_event(LOG_ERR, LOG_EV_GENERIC, "cannot remove recording",
				  LOG_FIELDS({"SOCKGATE_RECORDING", path},
					     {"REASON", strerror(errno)}));
		}
		free(f.name);
	}
}

static void dir_free(struct record_dir *d)
{
	dir_clear_closed(d);
	free(d->closed);
	if (d->fd >= 0)
		close(d->fd);
	free(d->path);
	free(d);
}

/* The directory at path, opened and scanned on first use; again if what is at
 * path is no longer what was opened (removed and made anew). NULL with errno. */
static struct record_dir *writer_dir(struct recorder *r, const char *path)
{
	struct record_dir *d, **pd;
	struct stat st;
	int fd;

	if (stat(path, &st) != 0)
		return NULL;
	for (pd = &r->dirs; (d = *pd) != NULL; pd = &d->next) {
		if (strcmp(d->path, path) != 0)
			continue;
		if (d->dev == st.st_dev && d->ino == st.st_ino)
			return d;
		if (d->n_open == 0) {
			*pd = d->next;
			dir_free(d);
		}
		break; /* one with open files stays until recorder_free() */
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (d == NULL || fstat(fd, &st) != 0 || (d->path = strdup(path)) == NULL) {
		free(d);
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	d->fd = fd;
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	dir_scan(d);
	d->next = r->dirs;
	r->dirs = d;
	return d;
}

/* ---- the writer: recordings ------------------------------------------------ */

static int rec_state(const struct recording *rec)
{
	return __atomic_load_n(&rec->state, __ATOMIC_ACQUIRE);
}

static void rec_set_state(struct recording *rec, int state)
{
	__atomic_store_n(&rec->state, state, __ATOMIC_RELEASE);
}

/* Closes the file and hands it to its directory as a closed recording. */
static void writer_release(struct recording *rec)
{
	struct record_dir *d = rec->dir;
	struct timespec mtime;
	struct stat st;

	if (d == NULL)
		return;
	if (rec->fd >= 0) {
		if (fstat(rec->fd, &st) == 0)
			mtime = st.st_mtim;
		else
			clock_gettime(CLOCK_REALTIME, &mtime);
		close(rec->fd);
		rec->fd = -1;
		/* Without memory for its entry, the file is counted but never removed. */
		(void)dir_add_closed(d, rec->name, rec->size, mtime);
	}
	for (struct recording **p = &d->open; *p != NULL; p = &(*p)->dir_next) {
		if (*p == rec) {
			*p = rec->dir_next;
			break;
		}
	}
	d->n_open--;
	rec->dir = NULL;
}

/* The recording cannot go on: logged once, here, because only the writer knows. */
static void writer_fail(struct recording *rec, const char *what, int errnum)
{
	struct errbuf e;

	if (rec_state(rec) == RECORDING_FAILED)
		return;
	if (errnum != 0)
		errbuf_errno(&e, errnum, "%s", what);
	else
		errbuf_set(&e, "%s", what);
	log_event(LOG_ERR, LOG_EV_GENERIC, "recording failed",
		  LOG_FIELDS({"SOCKGATE_SESSION", rec->session_id},
			     {"SOCKGATE_GATEWAY", rec->gateway}, {"SOCKGATE_RECORDING", rec->path},
			     {"REASON", e.msg}));
	writer_release(rec);
	rec_set_state(rec, RECORDING_FAILED);
}

/* Appends a whole line. A line cut by an error is cut off the file again, so
 * that what stays is whole lines. */
static int writer_write(struct recording *rec, const char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(rec->fd, buf + done, len - done);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		{
			int e = n < 0 ? errno : EIO;

			if (done > 0 && ftruncate(rec->fd, (off_t)rec->size) != 0) {
				rec->size += done;
				rec->dir->total += done;
			}
			writer_fail(rec, "cannot write", e);
			return -1;
		}
	}
	rec->size += len;
	rec->dir->total += len;
	return 0;
}

/* A final marker: inside the reserve, so never refused by a cap. */
static void writer_final_marker(struct recorder *r, struct recording *rec, uint64_t t_ms,
				const char *text)
{
	char *line = r->out;
	size_t o = format_prefix(line, t_ms, 'm'), n;

	json_escape((const unsigned char *)text, strlen(text), false, line + o, RECORD_MARKER_MAX,
		    &n);
	o += n;
	o = put(line, o, "\"]\n");
	(void)writer_write(rec, line, o);
}

/* A cap was reached: the recording ends here, with a marker. */
static void writer_stop(struct recorder *r, struct recording *rec, uint64_t t_ms, const char *why)
{
	/* Bytes held back for a character's end are session bytes too. */
	rec->discarded += rec->carry_len[0] + rec->carry_len[1];
	rec->carry_len[0] = rec->carry_len[1] = 0;
	writer_final_marker(r, rec, t_ms, why);
	if (rec_state(rec) == RECORDING_ACTIVE)
		rec_set_state(rec, RECORDING_STOPPED);
}

/* Writes the event whose text r->out holds at RECORD_PREFIX_MAX (text_len
 * bytes, encoded from in[0..in_len)), within both caps: closed recordings make
 * way under the directory's; what does not fit is cut at a character and the
 * recording stops. Returns 0 if it goes on. */
static int writer_event(struct recorder *r, struct recording *rec, uint64_t t_ms, char kind,
			const unsigned char *in, size_t in_len, size_t text_len)
{
	char prefix[RECORD_PREFIX_MAX], *text = r->out + RECORD_PREFIX_MAX;
	size_t plen = format_prefix(prefix, t_ms, kind), need = plen + text_len + 3;
	uint64_t own_room, room;
	const char *why;

	own_room = rec->max_bytes > rec->size + RECORD_RESERVE
			   ? rec->max_bytes - rec->size - RECORD_RESERVE
			   : 0;
	dir_make_room(rec->dir, need < own_room ? need : own_room);
	room = dir_room(rec->dir) < own_room ? dir_room(rec->dir) : own_room;
	if (need > room) {
		size_t used = 0;

		why = own_room < need ? "recording stopped: size cap"
				      : "recording stopped: directory cap";
		need = 0;
		if (room > plen + 3) {
			used = json_escape(in, in_len, false, text, room - plen - 3, &text_len);
			if (text_len > 0)
				need = plen + text_len + 3;
		}
		if (kind != 'm')
			rec->discarded += in_len - used;
	} else {
		why = NULL;
	}
	if (need > 0) {
		memcpy(text - plen, prefix, plen);
		memcpy(text + text_len, "\"]\n", 3);
		if (writer_write(rec, text - plen, need) < 0)
			return -1;
	}
	if (why != NULL) {
		writer_stop(r, rec, t_ms, why);
		return -1;
	}
	return 0;
}

/* A marker that is not final ("bytes dropped"): subject to the caps as data is. */
static int writer_marker(struct recorder *r, struct recording *rec, uint64_t t_ms, const char *text)
{
	size_t len = strlen(text), n;

	json_escape((const unsigned char *)text, len, false, r->out + RECORD_PREFIX_MAX,
		    RECORD_MARKER_MAX, &n);
	return writer_event(r, rec, t_ms, 'm', (const unsigned char *)text, len, n);
}

static int writer_dropped(struct recorder *r, struct recording *rec, uint64_t t_ms,
			  uint64_t dropped)
{
	char text[64];

	if (dropped == 0)
		return 0;
	snprintf(text, sizeof(text), "bytes dropped: %" PRIu64, dropped);
	return writer_marker(r, rec, t_ms, text);
}

/* The event time: never before the previous one (the callers' clocks only
 * go forward, but their threads' items may interleave differently). */
static uint64_t writer_time(struct recording *rec, uint64_t t_ms)
{
	if (t_ms < rec->last_ms)
		return rec->last_ms;
	rec->last_ms = t_ms;
	return t_ms;
}

/* Chunk bytes of one direction, after the bytes held back from the previous
 * chunk; an incomplete UTF-8 sequence at the end is held back in turn (hold),
 * or escaped (at the end of the recording). */
static int writer_chunk(struct recorder *r, struct recording *rec, uint64_t t_ms, int way,
			const unsigned char *data, size_t len, bool hold)
{
	char kind = way == 0 ? 'o' : 'i';

	do {
		size_t n = len < RECORD_SLICE ? len : RECORD_SLICE, in_len, used, text_len;
		bool last = n == len;

		memcpy(r->in, rec->carry[way], rec->carry_len[way]);
		if (n > 0)
			memcpy(r->in + rec->carry_len[way], data, n);
		in_len = rec->carry_len[way] + n;
		used = json_escape(r->in, in_len, hold || !last, r->out + RECORD_PREFIX_MAX,
				   r->out_cap - RECORD_PREFIX_MAX - 3, &text_len);
		rec->carry_len[way] = in_len - used; /* at most 3: the rest fits the buffer */
		memcpy(rec->carry[way], r->in + used, rec->carry_len[way]);
		data += n;
		len -= n;
		if (used > 0 && writer_event(r, rec, t_ms, kind, r->in, used, text_len) < 0) {
			rec->discarded += len; /* the slices after the stop */
			return -1;
		}
	} while (len > 0);
	return 0;
}

static void writer_open(struct recorder *r, struct recording *rec)
{
	struct record_dir *d;
	size_t len;
	int fd;

	d = writer_dir(r, rec->directory);
	if (d == NULL) {
		writer_fail(rec, "cannot open the directory", errno);
		return;
	}
	d->max_total = rec->max_total;
	len = format_header(rec, r->out);
	if (len + RECORD_RESERVE > rec->max_bytes) {
		writer_fail(rec, "max_bytes leaves no room for a recording", 0);
		return;
	}
	d->n_open++; /* its reserve counts from here */
	dir_make_room(d, len);
	if (dir_room(d) < len) {
		d->n_open--;
		writer_fail(rec, "no room under max_total_bytes: the other recordings are open", 0);
		return;
	}
	fd = openat(d->fd, rec->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		d->n_open--;
		writer_fail(rec, "cannot create the file", errno);
		return;
	}
	rec->fd = fd;
	rec->dir = d;
	rec->dir_next = d->open;
	d->open = rec;
	(void)writer_write(rec, r->out, len);
}

static void writer_data(struct recorder *r, struct recording *rec, const struct record_item *it)
{
	uint64_t t_ms;

	if (rec_state(rec) == RECORDING_FAILED)
		return;
	if (rec_state(rec) == RECORDING_STOPPED) {
		rec->discarded += it->len;
		return;
	}
	t_ms = writer_time(rec, it->t_ms);
	if (writer_dropped(r, rec, t_ms, it->dropped_before) < 0) {
		rec->discarded += it->len;
		return;
	}
	(void)writer_chunk(r, rec, t_ms, it->kind == RECORD_OUTPUT ? 0 : 1, it->data, it->len,
			   true);
}

static void rec_free(struct recording *rec)
{
	free(rec->path);
	free(rec->name);
	free(rec->directory);
	free(rec->session_id);
	free(rec->gateway);
	free(rec->user);
	free(rec->client);
	free(rec->upstream);
	free(rec->close_item);
	free(rec);
}

static void writer_close(struct recorder *r, struct recording *rec, const struct record_item *it)
{
	uint64_t t_ms = writer_time(rec, it->t_ms), unrecorded;
	char text[RECORD_REASON_MAX + 128];

	if (rec_state(rec) == RECORDING_ACTIVE &&
	    writer_dropped(r, rec, t_ms, it->dropped_before) == 0)
		for (int way = 0; way < 2 && rec_state(rec) == RECORDING_ACTIVE; way++)
			if (rec->carry_len[way] > 0)
				(void)writer_chunk(r, rec, t_ms, way, NULL, 0, false);
	if (rec_state(rec) != RECORDING_FAILED && rec->dir != NULL) {
		unrecorded = rec->discarded + it->unrecorded;
		if (unrecorded > 0)
			snprintf(text, sizeof(text),
				 "session closed (%" PRIu64
				 " bytes not recorded after the stop): %.*s",
				 unrecorded, (int)it->len, (const char *)it->data);
		else
			snprintf(text, sizeof(text), "session closed: %.*s", (int)it->len,
				 (const char *)it->data);
		writer_final_marker(r, rec, t_ms, text);
	}
	writer_release(rec);
	rec_free(rec);
}

static void writer_item(struct recorder *r, struct record_item *it)
{
	switch (it->kind) {
	case RECORD_OPEN:
		writer_open(r, it->rec);
		break;
	case RECORD_OUTPUT:
	case RECORD_INPUT:
		writer_data(r, it->rec, it);
		break;
	case RECORD_CLOSE:
		writer_close(r, it->rec, it); /* frees the recording */
		break;
	}
	free(it);
}

static void *record_thread(void *arg)
{
	struct recorder *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct record_item *batch;
		uint64_t n = 0;

		while (r->head == NULL && !r->stopping) {
			r->waiting = true;
			pthread_cond_wait(&r->work, &r->lock);
			r->waiting = false;
		}
		if (r->head == NULL)
			break;
		batch = r->head;
		r->head = NULL;
		r->tail = &r->head;
		pthread_mutex_unlock(&r->lock);
		while (batch != NULL) {
			struct record_item *it = batch;
			size_t size = item_size(it);

			batch = it->next;
			writer_item(r, it);
			/* Room for the callers as soon as each item is written. */
			__atomic_sub_fetch(&r->queued, size, __ATOMIC_RELAXED);
			n++;
		}
		pthread_mutex_lock(&r->lock);
		r->n_done += n;
		pthread_cond_broadcast(&r->flushed);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* ---- the recorder ---------------------------------------------------------- */

struct recorder *recorder_create(size_t queue_bytes, struct errbuf *err)
{
	struct recorder *r = calloc(1, sizeof(*r));
	sigset_t all, old;
	int rc;

	if (r == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	r->queue_bytes = queue_bytes;
	r->tail = &r->head;
	/* Every byte of a slice may become a 6-byte escape. */
	r->out_cap = RECORD_PREFIX_MAX + 6 * (RECORD_SLICE + 4) + 8;
	r->out = malloc(r->out_cap);
	r->in = malloc(RECORD_SLICE + 4);
	if (r->out == NULL || r->in == NULL) {
		free(r->out);
		free(r->in);
		free(r);
		errbuf_set(err, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->work, NULL);
	pthread_cond_init(&r->flushed, NULL);
	/* Signals belong to the main thread's signalfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&r->thread, NULL, record_thread, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errbuf_errno(err, rc, "cannot start the recording thread");
		pthread_cond_destroy(&r->flushed);
		pthread_cond_destroy(&r->work);
		pthread_mutex_destroy(&r->lock);
		free(r->out);
		free(r->in);
		free(r);
		return NULL;
	}
	pthread_setname_np(r->thread, "sockgate-rec");
	return r;
}

void recorder_flush(struct recorder *r)
{
	uint64_t target;

	pthread_mutex_lock(&r->lock);
	target = r->n_queued;
	while (r->n_done < target)
		pthread_cond_wait(&r->flushed, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

void recorder_free(struct recorder *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	while (r->dirs != NULL) {
		struct record_dir *d = r->dirs;

		r->dirs = d->next;
		while (d->open != NULL) {
			log_msg(LOG_WARNING, "recording %s still open when the recorder stopped",
				d->open->path);
			writer_release(d->open);
		}
		dir_free(d);
	}
	pthread_cond_destroy(&r->flushed);
	pthread_cond_destroy(&r->work);
	pthread_mutex_destroy(&r->lock);
	free(r->out);
	free(r->in);
	free(r);
}

/* Under r->lock. */
static void recorder_push(struct recorder *r, struct record_item *it)
{
	it->next = NULL;
	*r->tail = it;
	r->tail = &it->next;
	__atomic_add_fetch(&r->queued, item_size(it), __ATOMIC_RELAXED);
	r->n_queued++;
	if (r->waiting)
		pthread_cond_signal(&r->work);
}

/* ---- a recording, on the caller's thread ----------------------------------- */

static char *dup_or_null(const char *s, bool *failed)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*failed = true;
	return d;
}

struct recording *recording_open(struct recorder *r, const char *directory, uint64_t max_bytes,
				 uint64_t max_total_bytes, const char *session_id,
				 const char *gateway, const char *user, const char *client_addr,
				 const char *upstream, time_t started, uint64_t now_ms,
				 struct errbuf *err)
{
	char stamp[32], id[RECORD_ID_MAX + 1], name[128], *path;
	struct recording *rec = NULL;
	struct record_item *open_item = NULL;
	bool failed = false;
	struct stat st;
	struct tm tm;
	size_t dlen, i;

	if (r == NULL || directory == NULL || directory[0] == '\0' || session_id == NULL ||
	    session_id[0] == '\0' || gateway == NULL || client_addr == NULL) {
		errbuf_set(err, "recording: missing directory, session id, gateway or client");
		return NULL;
	}
	/* What the caller must hear now; the rest (creating, writing) is the
	 * writer's. A stat() and an access check of a directory are answered from
	 * the kernel's caches: they write nothing and wait for no journal. */
	if (stat(directory, &st) != 0) {
		errbuf_errno(err, errno, "recording directory %s", directory);
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		errbuf_set(err, "recording directory %s is not a directory", directory);
		return NULL;
	}
	if (faccessat(AT_FDCWD, directory, W_OK | X_OK, AT_EACCESS) != 0) {
		errbuf_errno(err, errno, "recording directory %s is not writable", directory);
		return NULL;
	}
	if (gmtime_r(&started, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0) {
		errbuf_set(err, "recording: start time out of range");
		return NULL;
	}
	/* The id is part of a file name: nothing that could leave the directory. */
	for (i = 0; session_id[i] != '\0' && i < RECORD_ID_MAX; i++) {
		char c = session_id[i];

		id[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
					(c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'
				? c
				: '_';
	}
	id[i] = '\0';
	snprintf(name, sizeof(name), "%s-%s%s", stamp, id, RECORD_SUFFIX);
	dlen = strlen(directory);
	while (dlen > 1 && directory[dlen - 1] == '/')
		dlen--;

	rec = calloc(1, sizeof(*rec));
	open_item = calloc(1, sizeof(*open_item));
	if (rec == NULL || open_item == NULL)
		goto fail;
	rec->close_item = calloc(1, sizeof(*rec->close_item) + RECORD_REASON_MAX);
	path = malloc(dlen + 1 + strlen(name) + 1);
	rec->path = path;
	if (rec->close_item == NULL || path == NULL)
		goto fail;
	snprintf(path, dlen + 1 + strlen(name) + 1, "%.*s/%s", (int)dlen, directory, name);
	rec->name = dup_or_null(name, &failed);
	rec->directory = strndup(directory, dlen);
	rec->session_id = dup_or_null(session_id, &failed);
	rec->gateway = dup_or_null(gateway, &failed);
	rec->user = dup_or_null(user, &failed);
	rec->client = dup_or_null(client_addr, &failed);
	rec->upstream = dup_or_null(upstream, &failed);
	if (failed || rec->directory == NULL)
		goto fail;
	rec->r = r;
	rec->max_bytes = max_bytes;
	rec->max_total = max_total_bytes;
	rec->started = started;
	rec->start_ms = now_ms;
	rec->fd = -1;
	rec->state = RECORDING_ACTIVE;
	open_item->rec = rec;
	open_item->kind = RECORD_OPEN;
	pthread_mutex_lock(&r->lock);
	recorder_push(r, open_item); /* never refused: bounded by the sessions */
	pthread_mutex_unlock(&r->lock);
	return rec;
fail:
	errbuf_set(err, "recording: out of memory");
	free(open_item);
	if (rec != NULL)
		rec_free(rec);
	return NULL;
}

const char *recording_path(const struct recording *rec)
{
	return rec->path;
}

static uint64_t rec_time(const struct recording *rec, uint64_t now_ms)
{
	return now_ms > rec->start_ms ? now_ms - rec->start_ms : 0;
}

static void rec_drop(struct recording *rec, size_t len)
{
	rec->dropped += len;
	rec->dropped_pending += len;
}

void recording_data(struct recording *rec, bool from_client, const void *buf, size_t len,
		    uint64_t now_ms)
{
	struct recorder *r = rec->r;
	size_t size = sizeof(struct record_item) + len, queued;
	struct record_item *it;

	if (len == 0)
		return;
	if (rec_state(rec) != RECORDING_ACTIVE) {
		rec->unrecorded += len;
		return;
	}
	/* A look without the lock first: while the writer is behind, a dropped
	 * chunk costs neither a malloc nor the lock. */
	queued = __atomic_load_n(&r->queued, __ATOMIC_RELAXED);
	if (queued > r->queue_bytes || size > r->queue_bytes - queued) {
		rec_drop(rec, len);
		return;
	}
	it = malloc(size);
	if (it == NULL) {
		rec_drop(rec, len);
		return;
	}
	it->rec = rec;
	it->kind = from_client ? RECORD_INPUT : RECORD_OUTPUT;
	it->t_ms = rec_time(rec, now_ms);
	it->unrecorded = 0;
	it->len = len;
	memcpy(it->data, buf, len);
	pthread_mutex_lock(&r->lock);
	queued = __atomic_load_n(&r->queued, __ATOMIC_RELAXED);
	if (queued > r->queue_bytes || size > r->queue_bytes - queued) {
		pthread_mutex_unlock(&r->lock);
		free(it);
		rec_drop(rec, len);
		return;
	}
	it->dropped_before = rec->dropped_pending;
	rec->dropped_pending = 0;
	recorder_push(r, it);
	pthread_mutex_unlock(&r->lock);
}

uint64_t recording_dropped(const struct recording *rec)
{
	return rec->dropped;
}

enum recording_state recording_state(const struct recording *rec)
{
	return (enum recording_state)rec_state(rec);
}

void recording_close(struct recording *rec, const char *reason, uint64_t now_ms)
{
	struct recorder *r = rec->r;
	struct record_item *it = rec->close_item;
	size_t len = reason != NULL ? strnlen(reason, RECORD_REASON_MAX) : 0;

	rec->close_item = NULL; /* the writer frees it with the recording */
	it->rec = rec;
	it->kind = RECORD_CLOSE;
	it->t_ms = rec_time(rec, now_ms);
	it->unrecorded = rec->unrecorded;
	it->dropped_before = rec->dropped_pending;
	it->len = len;
	if (len > 0)
		memcpy(it->data, reason, len);
	pthread_mutex_lock(&r->lock);
	recorder_push(r, it);
	pthread_mutex_unlock(&r->lock);
}
