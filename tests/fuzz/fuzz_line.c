/* fuzz_line: the login line reader fed a byte stream in chunks, as recv() would
 * deliver it. The input is [n][n chunk sizes][stream]: n = byte 0 % 8 sizes,
 * each used as 1 + size bytes in turn (n = 0: as much as fits each time).
 * Every call is checked against the contract in line.h, and the lines must not
 * depend on how the stream was cut. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "line.h"

#define MAX_SIZES 7

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What a run saw, summarised so two runs can be compared. */
struct outcome {
	uint64_t digest; /* FNV-1a over every result and line */
	size_t lines;
	enum line_result last; /* NEED_MORE, or the error that ended the run */
};

static void die(const char *what, size_t at)
{
	fprintf(stderr, "fuzz_line: %s (stream offset %zu)\n", what, at);
	abort();
}

static void mix(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		*h = (*h ^ b[i]) * 0x100000001b3ull;
}

/* The buffer's state must stay inside the buffer, and what is pending must be
 * the stream's unconsumed tail, byte for byte (it becomes relayed data). */
static void check_state(const struct line_reader *r, const uint8_t *stream, size_t fed)
{
	const char *pend;
	size_t n;

	if (r->len > sizeof(r->buf) - 1 || r->start > r->len)
		die("reader state out of bounds", fed);
	n = line_pending(r, &pend);
	if (pend < r->buf || n > sizeof(r->buf) - 1 || pend + n > r->buf + r->len)
		die("pending bytes outside the buffer", fed);
	if (n > fed || memcmp(pend, stream + fed - n, n) != 0)
		die("pending bytes are not the stream's tail", fed);
}

static void check_line(const struct line_reader *r, const char *line, size_t len, size_t fed)
{
	if (line < r->buf || line + len >= r->buf + sizeof(r->buf))
		die("line outside the buffer", fed);
	if (len > LINE_MAX_LEN)
		die("line longer than LINE_MAX_LEN", fed);
	if (line[len] != '\0')
		die("line not NUL-terminated", fed);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < 0x20 || c == 0x7f)
			die("control byte in a line", fed);
	}
}

/* Feeds stream in chunks of sizes[i % n_sizes] + 1 bytes (n_sizes == 0: all
 * that fits), taking lines after each, until an error or the end. */
static struct outcome run(const uint8_t *stream, size_t len, const uint8_t *sizes, size_t n_sizes)
{
	struct outcome out = {.digest = 0xcbf29ce484222325ull, .last = LINE_NEED_MORE};
	struct line_reader r;
	size_t fed = 0, k = 0;

	memset(&r, 0, sizeof(r));
	for (;;) {
		enum line_result res;
		char *line, *at;
		size_t n, room;

		while ((res = line_take(&r, &line, &n)) == LINE_OK) {
			check_line(&r, line, n, fed);
			mix(&out.digest, &n, sizeof(n));
			mix(&out.digest, line, n);
			out.lines++;
			check_state(&r, stream, fed);
		}
		check_state(&r, stream, fed);
		if (res != LINE_NEED_MORE) {
			if (res != LINE_TOO_LONG && res != LINE_BAD_CHAR)
				die("unknown result", fed);
			out.last = res;
			break;
		}
		if (fed == len)
			break;
		/* The session reads into this space; none would look like EOF. */
		room = line_space(&r, &at);
		if (room == 0)
			die("no room although a line is incomplete", fed);
		if (at != r.buf + r.len || room != sizeof(r.buf) - 1 - r.len || r.start != 0)
			die("line_space returned an inconsistent space", fed);
		check_state(&r, stream, fed);
		n = n_sizes > 0 ? (size_t)sizes[k++ % n_sizes] + 1 : room;
		if (n > room)
			n = room;
		if (n > len - fed)
			n = len - fed;
		memcpy(at, stream + fed, n);
		line_commit(&r, n);
		fed += n;
		check_state(&r, stream, fed);
	}
	mix(&out.digest, &out.last, sizeof(out.last));
	line_wipe(&r);
	for (size_t i = 0; i < sizeof(r.buf); i++)
		if (r.buf[i] != 0)
			die("line_wipe left a byte", i);
	if (r.len != 0 || r.start != 0 || r.after_crnul)
		die("line_wipe left state", 0);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome chunked, whole;
	size_t n_sizes;

	if (size == 0)
		return 0;
	n_sizes = data[0] % (MAX_SIZES + 1);
	if (size < 1 + n_sizes)
		return 0;
	chunked = run(data + 1 + n_sizes, size - 1 - n_sizes, data + 1, n_sizes);
	whole = run(data + 1 + n_sizes, size - 1 - n_sizes, NULL, 0);
	if (chunked.digest != whole.digest || chunked.lines != whole.lines ||
	    chunked.last != whole.last) {
		fprintf(stderr,
			"fuzz_line: chunked: %zu lines, then %s; whole: %zu lines, then %s\n",
			chunked.lines, line_result_str(chunked.last), whole.lines,
			line_result_str(whole.last));
		abort();
	}
	return 0;
}
