/* line: the login line splitter (see line.h). */
#include "line.h"

#include <string.h>

size_t line_space(struct line_reader *r, char **at)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->len - r->start);
		/* The moved-from tail may hold a password: do not leave a copy. */
		memset(r->buf + r->len - r->start, 0, r->start);
		r->len -= r->start;
		r->start = 0;
	}
	*at = r->buf + r->len;
	return sizeof(r->buf) - r->len - 1; /* keep one byte for a terminating NUL */
}

void line_commit(struct line_reader *r, size_t n)
{
	r->len += n;
}

enum line_result line_take(struct line_reader *r, char **line, size_t *len)
{
	char *p = r->buf + r->start;
	size_t avail = r->len - r->start;
	size_t i, n;

	for (i = 0; i < avail; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\n')
			break;
		if (c == '\r' && i + 1 < avail && p[i + 1] == '\n')
			continue;
		if (c == '\r' && i + 1 == avail)
			break; /* maybe the CR of a CRLF cut in two reads */
		if (c < 0x20 || c == 0x7f)
			return LINE_BAD_CHAR;
		if (i >= LINE_MAX_LEN)
			return LINE_TOO_LONG;
	}
	if (i >= avail || p[i] != '\n') {
		/* A line of LINE_MAX_LEN bytes may still need its CR and LF. */
		if (avail > LINE_MAX_LEN + 1)
			return LINE_TOO_LONG;
		return LINE_NEED_MORE;
	}
	n = i;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n > LINE_MAX_LEN)
		return LINE_TOO_LONG;
	p[n] = '\0';
	*line = p;
	*len = n;
	r->start += i + 1;
	return LINE_OK;
}

size_t line_pending(const struct line_reader *r, const char **data)
{
	*data = r->buf + r->start;
	return r->len - r->start;
}

void line_wipe(struct line_reader *r)
{
	explicit_bzero(r->buf, sizeof(r->buf));
	r->len = 0;
	r->start = 0;
}

const char *line_result_str(enum line_result res)
{
	switch (res) {
	case LINE_OK:
		return "ok";
	case LINE_NEED_MORE:
		return "incomplete line";
	case LINE_TOO_LONG:
		return "line too long";
	case LINE_BAD_CHAR:
		return "control character in input";
	}
	return "?";
}
