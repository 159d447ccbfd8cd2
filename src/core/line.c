/* line: the login line splitter (see line.h). */
#include "line.h"

#include <stdbool.h>
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

/* Telnet commands (RFC 854): a telnet client may open with option
 * negotiation (IAC DO/WILL ...) and encodes a bare Enter as CR NUL. */
#define TELNET_IAC  255
#define TELNET_SB   250
#define TELNET_SE   240
#define TELNET_WILL 251
#define TELNET_DONT 254

/* Where the line starting at p ends, without touching the buffer (a line that
 * needs more input is scanned again from its start next time). On LINE_OK,
 * *consumed is the raw length including the terminator and *crnul says it
 * ended in CR NUL. */
static enum line_result line_scan(const unsigned char *p, size_t avail, size_t *consumed,
				  bool *crnul)
{
	size_t i = 0, out = 0;

	while (i < avail) {
		unsigned char c = p[i];

		if (c == TELNET_IAC) {
			if (i + 1 >= avail)
				return LINE_NEED_MORE;
			if (p[i + 1] == TELNET_IAC) { /* an escaped 0xFF data byte */
				i += 2;
				out++;
			} else if (p[i + 1] >= TELNET_WILL && p[i + 1] <= TELNET_DONT) {
				if (i + 2 >= avail)
					return LINE_NEED_MORE;
				i += 3;
				continue;
			} else if (p[i + 1] == TELNET_SB) {
				size_t j = i + 2;

				while (j + 1 < avail &&
				       !(p[j] == TELNET_IAC && p[j + 1] == TELNET_SE))
					j++;
				if (j + 1 >= avail)
					return LINE_NEED_MORE;
				i = j + 2;
				continue;
			} else {
				i += 2; /* NOP, GA, AYT, ...: nothing to do */
				continue;
			}
		} else if (c == '\n') {
			*consumed = i + 1;
			*crnul = false;
			return LINE_OK;
		} else if (c == '\r') {
			if (i + 1 >= avail)
				return LINE_NEED_MORE;
			if (p[i + 1] != '\n' && p[i + 1] != '\0')
				return LINE_BAD_CHAR;
			*consumed = i + 2;
			*crnul = p[i + 1] == '\0';
			return LINE_OK;
		} else if (c < 0x20 || c == 0x7f) {
			return LINE_BAD_CHAR;
		} else {
			i++;
			out++;
		}
		if (out > LINE_MAX_LEN)
			return LINE_TOO_LONG;
	}
	return LINE_NEED_MORE;
}

/* Copies the line's data bytes to its start, dropping telnet commands. */
static size_t line_compact(unsigned char *p, size_t raw)
{
	size_t i = 0, o = 0;

	while (i < raw) {
		if (p[i] == TELNET_IAC) {
			if (p[i + 1] == TELNET_IAC) {
				p[o++] = TELNET_IAC;
				i += 2;
			} else if (p[i + 1] >= TELNET_WILL && p[i + 1] <= TELNET_DONT) {
				i += 3;
			} else if (p[i + 1] == TELNET_SB) {
				i += 2;
				while (!(p[i] == TELNET_IAC && p[i + 1] == TELNET_SE))
					i++;
				i += 2;
			} else {
				i += 2;
			}
			continue;
		}
		if (p[i] == '\r' || p[i] == '\n')
			break;
		p[o++] = p[i++];
	}
	return o;
}

enum line_result line_take(struct line_reader *r, char **line, size_t *len)
{
	unsigned char *p = (unsigned char *)r->buf + r->start;
	size_t avail = r->len - r->start, consumed, n;
	enum line_result res;
	bool crnul;

	/* Telnet sends Enter as CR NUL in some modes and CR LF in others; after
	 * a CR NUL, a line end right behind it belongs to the same Enter. */
	if (r->after_crnul) {
		if (avail == 0 || (p[0] == '\r' && avail == 1))
			return LINE_NEED_MORE;
		if (p[0] == '\n')
			r->start += 1;
		else if (p[0] == '\r' && p[1] == '\n')
			r->start += 2;
		r->after_crnul = false;
		p = (unsigned char *)r->buf + r->start;
		avail = r->len - r->start;
	}
	res = line_scan(p, avail, &consumed, &crnul);
	if (res == LINE_NEED_MORE && avail >= sizeof(r->buf) - 1)
		return LINE_TOO_LONG; /* a full buffer and still no line end */
	if (res != LINE_OK)
		return res;
	n = line_compact(p, consumed);
	p[n] = '\0';
	*line = (char *)p;
	*len = n;
	r->start += consumed;
	r->after_crnul = crnul;
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
	r->after_crnul = false;
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
