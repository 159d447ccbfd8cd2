/* file: bounded whole-file reads (see file.h). */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void file_format_size(size_t bytes, char *buf, size_t len)
{
	if (bytes % (1u << 20) == 0)
		snprintf(buf, len, "%zu MiB", bytes >> 20);
	else
		snprintf(buf, len, "%zu bytes", bytes);
}

static char *file_too_large(const char *path, size_t max, struct errbuf *err)
{
	char size[32];

	file_format_size(max, size, sizeof(size));
	errbuf_set(err, "%s: larger than %s", path, size);
	return NULL;
}

/* Reads fd to its end. The size from fstat is only a hint: the file may change
 * while it is read, so the limit is checked on what arrives. */
static char *file_read_fd(int fd, const char *path, size_t hint, size_t max, size_t *len,
			  struct errbuf *err)
{
	size_t n = 0, cap = hint + 1;
	char *buf = malloc(cap + 1), *grown;

	if (buf == NULL) {
		errbuf_set(err, "%s: out of memory", path);
		return NULL;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			grown = realloc(buf, 2 * cap + 1);
			if (grown == NULL) {
				errbuf_set(err, "%s: out of memory", path);
				goto fail;
			}
			buf = grown;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r == 0)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			errbuf_errno(err, errno, "%s: cannot read", path);
			goto fail;
		}
		n += (size_t)r;
		if (n > max) {
			file_too_large(path, max, err);
			goto fail;
		}
	}
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	file_free(buf, n);
	return NULL;
}

char *file_read(const char *path, size_t max_bytes, struct stat *st, size_t *len,
		struct errbuf *err)
{
	char *text = NULL;
	int fd;

	/* O_NONBLOCK: opening a FIFO must not block before fstat refuses it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		errbuf_errno(err, errno, "%s: cannot open", path);
		return NULL;
	}
	if (fstat(fd, st) < 0)
		errbuf_errno(err, errno, "%s: cannot stat", path);
	else if (!S_ISREG(st->st_mode))
		errbuf_set(err, "%s: not a regular file", path);
	else if ((size_t)st->st_size > max_bytes)
		file_too_large(path, max_bytes, err);
	else
		text = file_read_fd(fd, path, (size_t)st->st_size, max_bytes, len, err);
	close(fd);
	return text;
}

void file_free(char *text, size_t len)
{
	if (text == NULL)
		return;
	explicit_bzero(text, len);
	free(text);
}
