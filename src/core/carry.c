/* carry: the records of carried sessions (see carry.h). */
#include "carry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

/* The file: a header, then slots of CARRY_SLOT bytes, each a used byte and a
 * record. A record layout of another build (the size differs, or the magic)
 * is not read: its sessions cannot be taken over and end. */
#define CARRY_MAGIC "sockgate-carry-1"
#define CARRY_SLOT  1024

struct carry_header {
	char magic[16];
	uint32_t record_size;
	uint8_t planned;
};

_Static_assert(sizeof(struct carry_record) + 1 <= CARRY_SLOT, "a record fits its slot");
_Static_assert(sizeof(struct carry_header) <= CARRY_SLOT, "the header fits a slot");

struct carry {
	pthread_mutex_t lock;
	int fd;
	char dir[PATH_MAX];
	bool was_planned;
	uint8_t *used; /* per slot */
	size_t n_slots;
	size_t n_used, max_used;
	struct carry_record *found;
	int *found_slots;
	size_t n_found;
};

static off_t carry_offset(int slot)
{
	return (off_t)CARRY_SLOT * (off_t)(slot + 1);
}

static int carry_write_header(struct carry *c, bool planned)
{
	struct carry_header h = {.record_size = sizeof(struct carry_record), .planned = planned};

	memcpy(h.magic, CARRY_MAGIC, sizeof(h.magic));
	return pwrite(c->fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) ? 0 : -1;
}

/* Reads what the process before left. A file of another layout is emptied. */
static int carry_load(struct carry *c, struct errbuf *err)
{
	struct carry_header h;
	struct stat st;
	uint8_t slot[CARRY_SLOT];
	size_t n;

	if (fstat(c->fd, &st) < 0)
		return errbuf_errno(err, errno, "carry: cannot stat its file");
	if (pread(c->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, CARRY_MAGIC, sizeof(h.magic)) != 0 ||
	    h.record_size != sizeof(struct carry_record)) {
		/* Empty, or another build's layout: nothing to take over. */
		return ftruncate(c->fd, 0) == 0 ? 0 : errbuf_errno(err, errno, "carry: truncate");
	}
	c->was_planned = h.planned != 0;
	/* The last slot may be short: a record is written, not its whole slot. */
	n = st.st_size > CARRY_SLOT ? (size_t)((st.st_size + CARRY_SLOT - 1) / CARRY_SLOT) - 1 : 0;
	c->used = calloc(n + 1, 1);
	c->found = calloc(n + 1, sizeof(*c->found));
	c->found_slots = calloc(n + 1, sizeof(*c->found_slots));
	if (c->used == NULL || c->found == NULL || c->found_slots == NULL)
		return errbuf_set(err, "out of memory");
	c->n_slots = n;
	for (size_t i = 0; i < n; i++) {
		if (pread(c->fd, slot, sizeof(struct carry_record) + 1, carry_offset((int)i)) !=
			    (ssize_t)sizeof(struct carry_record) + 1 ||
		    slot[0] == 0)
			continue;
		memcpy(&c->found[c->n_found], slot + 1, sizeof(struct carry_record));
		/* Whatever the file says, the strings end. */
		c->found[c->n_found].id[sizeof(c->found->id) - 1] = '\0';
		c->found[c->n_found].gateway[sizeof(c->found->gateway) - 1] = '\0';
		c->found[c->n_found].user[sizeof(c->found->user) - 1] = '\0';
		c->found[c->n_found].target[sizeof(c->found->target) - 1] = '\0';
		c->found[c->n_found].upstream[sizeof(c->found->upstream) - 1] = '\0';
		if (c->found[c->n_found].peer_len > sizeof(struct sockaddr_storage))
			c->found[c->n_found].peer_len = sizeof(struct sockaddr_storage);
		c->found_slots[c->n_found++] = (int)i;
		c->used[i] = 1;
		c->n_used++;
	}
	return 0;
}

void carry_session_name(int slot, bool client, char *name, size_t len)
{
	static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	char tmp[16];
	size_t n = 0;
	unsigned v = (unsigned)slot;

	do
		tmp[n++] = digits[v % 36];
	while ((v /= 36) != 0 && n < sizeof(tmp));
	if (len < n + 3) {
		if (len > 0)
			name[0] = '\0';
		return;
	}
	name[0] = '~';
	name[1] = client ? 'c' : 'u';
	for (size_t i = 0; i < n; i++)
		name[2 + i] = tmp[n - 1 - i];
	name[2 + n] = '\0';
}

bool carry_session_fd_name(const char *name, int *slot, bool *client)
{
	unsigned long v = 0;
	size_t i;

	if (name[0] != '~' || (name[1] != 'c' && name[1] != 'u') || name[2] == '\0')
		return false;
	for (i = 2; name[i] != '\0'; i++) {
		const char *d = strchr("0123456789abcdefghijklmnopqrstuvwxyz", name[i]);

		if (d == NULL || i > 8)
			return false;
		v = v * 36 + (unsigned long)(d - "0123456789abcdefghijklmnopqrstuvwxyz");
	}
	*slot = (int)v;
	*client = name[1] == 'c';
	return true;
}

struct carry *carry_open(const char *dir, size_t max_sessions, struct errbuf *err)
{
	struct carry *c = calloc(1, sizeof(*c));
	char path[PATH_MAX + 16];

	if (c == NULL) {
		errbuf_set(err, "out of memory");
		return NULL;
	}
	c->max_used = max_sessions;
	pthread_mutex_init(&c->lock, NULL);
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	snprintf(path, sizeof(path), "%s/sessions", dir);
	c->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (c->fd < 0) {
		errbuf_errno(err, errno, "carry: cannot open %s", path);
		carry_free(c);
		return NULL;
	}
	if (carry_load(c, err) < 0 || carry_write_header(c, false) < 0) {
		if (err->msg[0] == '\0')
			errbuf_errno(err, errno, "carry: cannot write %s", path);
		carry_free(c);
		return NULL;
	}
	return c;
}

void carry_free(struct carry *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->used);
	free(c->found);
	free(c->found_slots);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

bool carry_was_planned(const struct carry *c)
{
	return c->was_planned;
}

void carry_set_planned(struct carry *c)
{
	pthread_mutex_lock(&c->lock);
	(void)carry_write_header(c, true);
	(void)fdatasync(c->fd);
	pthread_mutex_unlock(&c->lock);
}

size_t carry_found(const struct carry *c, const struct carry_record **records, const int **slots)
{
	*records = c->found;
	*slots = c->found_slots;
	return c->n_found;
}

static int carry_write(struct carry *c, int slot, const struct carry_record *r)
{
	uint8_t buf[CARRY_SLOT] = {0};

	buf[0] = r != NULL;
	if (r != NULL)
		memcpy(buf + 1, r, sizeof(*r));
	return pwrite(c->fd, buf, r != NULL ? sizeof(*r) + 1 : 1, carry_offset(slot)) < 0 ? -1 : 0;
}

int carry_put(struct carry *c, const struct carry_record *r)
{
	int slot = -1;

	pthread_mutex_lock(&c->lock);
	if (c->n_used >= c->max_used) {
		pthread_mutex_unlock(&c->lock);
		return -1;
	}
	for (size_t i = 0; i < c->n_slots; i++)
		if (!c->used[i]) {
			slot = (int)i;
			break;
		}
	if (slot < 0) {
		size_t n = c->n_slots < 64 ? 64 : c->n_slots * 2;
		uint8_t *grown = realloc(c->used, n);

		if (grown != NULL) {
			memset(grown + c->n_slots, 0, n - c->n_slots);
			c->used = grown;
			slot = (int)c->n_slots;
			c->n_slots = n;
		}
	}
	if (slot >= 0) {
		if (carry_write(c, slot, r) == 0) {
			c->used[slot] = 1;
			c->n_used++;
		} else {
			slot = -1;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return slot;
}

void carry_update(struct carry *c, int slot, const struct carry_record *r)
{
	pthread_mutex_lock(&c->lock);
	(void)carry_write(c, slot, r);
	pthread_mutex_unlock(&c->lock);
}

static void carry_side_path(const struct carry *c, const char *id, bool in, char *path, size_t len)
{
	snprintf(path, len, "%s/held-%s-%s", c->dir, id, in ? "in" : "out");
}

void carry_drop(struct carry *c, int slot)
{
	pthread_mutex_lock(&c->lock);
	if (slot >= 0 && (size_t)slot < c->n_slots && c->used[slot]) {
		(void)carry_write(c, slot, NULL);
		c->used[slot] = 0;
		c->n_used--;
	}
	pthread_mutex_unlock(&c->lock);
}

void carry_sweep(struct carry *c)
{
	DIR *d = opendir(c->dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "held-", 5) == 0)
			(void)unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

int carry_hold(struct carry *c, const char *id, bool in, const void *buf, size_t len)
{
	char path[PATH_MAX + 64];
	int fd, rc = 0;

	carry_side_path(c, id, in, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len && rc == 0;) {
		ssize_t n = write(fd, (const char *)buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rc = -1;
		else
			off += (size_t)n;
	}
	if (close(fd) < 0)
		rc = -1;
	return rc;
}

int carry_take(struct carry *c, const char *id, bool in, size_t expected, char **buf, size_t *len)
{
	char path[PATH_MAX + 64], *text;
	struct errbuf err;
	struct stat st;
	size_t n = 0;

	*buf = NULL;
	*len = 0;
	if (expected == 0)
		return 0;
	carry_side_path(c, id, in, path, sizeof(path));
	text = file_read(path, expected, &st, &n, &err);
	(void)unlink(path);
	if (text == NULL || n != expected) {
		if (text != NULL)
			file_free(text, n);
		return -1;
	}
	*buf = malloc(n);
	if (*buf != NULL)
		memcpy(*buf, text, n);
	file_free(text, n);
	if (*buf == NULL)
		return -1;
	*len = n;
	return 0;
}
