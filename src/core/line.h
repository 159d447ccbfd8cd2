/* line: splits the login phase's input into lines. Pure (no I/O), so the rules
 * are unit-tested and fuzzed directly: a line ends in LF or CRLF (or a telnet
 * client's CR NUL) and holds at most LINE_MAX_LEN bytes; NUL and other control
 * bytes are refused; telnet commands (IAC ...) are dropped, so `telnet host`
 * works even when it opens with option negotiation. Bytes after the last
 * complete line stay in the buffer untouched (they become relayed data once the
 * login succeeds). */
#ifndef SOCKGATE_LINE_H
#define SOCKGATE_LINE_H

#include <stdbool.h>
#include <stddef.h>

#define LINE_MAX_LEN 255
/* A reader buffers at most one line plus its CRLF, and whatever the client
 * pipelined behind it within one read. */
#define LINE_BUF_LEN 1024

enum line_result {
	LINE_OK = 0,    /* a complete line (without CR/LF) was taken */
	LINE_NEED_MORE, /* no complete line yet */
	LINE_TOO_LONG,  /* more than LINE_MAX_LEN bytes before the LF */
	LINE_BAD_CHAR,  /* NUL or another control byte (not CR before LF) */
};

struct line_reader {
	char buf[LINE_BUF_LEN];
	size_t len;       /* bytes in buf */
	size_t start;     /* first byte not yet returned as a line */
	bool after_crnul; /* the last line ended in CR NUL */
};

/* Room for the next read(): returns the free space; *at receives where. Moves
 * unconsumed bytes to the front first. */
size_t line_space(struct line_reader *r, char **at);
/* Records n bytes just read into the space from line_space(). */
void line_commit(struct line_reader *r, size_t n);

/* Takes the next line. *line points into the reader and is valid until the next
 * call to line_space(); the line's bytes are NUL-terminated in place. */
enum line_result line_take(struct line_reader *r, char **line, size_t *len);

/* Bytes received after the last line taken. */
size_t line_pending(const struct line_reader *r, const char **data);

/* Wipes the buffer (it held a password). */
void line_wipe(struct line_reader *r);

const char *line_result_str(enum line_result res);

#endif
