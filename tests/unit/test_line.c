/* test_line: the login line splitter, as a table of inputs and the lines (or
 * the error) they must give, fed whole and one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "testmain.h"

#include "line.h"

struct line_case {
	const char *name;
	const char *input;
	size_t input_len;     /* 0: strlen(input) */
	const char *lines[4]; /* the lines expected, in order */
	enum line_result end; /* what follows the last line */
	const char *rest;     /* bytes left pending after the last line */
};

static char long255[256], long256[257];

static const struct line_case cases[] = {
	{"lf", "alice\n", 0, {"alice"}, LINE_NEED_MORE, ""},
	{"crlf", "alice\r\n", 0, {"alice"}, LINE_NEED_MORE, ""},
	{"two lines", "alice\nsecret\n", 0, {"alice", "secret"}, LINE_NEED_MORE, ""},
	{"mixed endings", "a\r\nb\nc\r\n", 0, {"a", "b", "c"}, LINE_NEED_MORE, ""},
	{"empty line", "\n", 0, {""}, LINE_NEED_MORE, ""},
	{"partial", "ali", 0, {NULL}, LINE_NEED_MORE, "ali"},
	{"cr pending", "alice\r", 0, {NULL}, LINE_NEED_MORE, "alice\r"},
	/* The session stops taking lines after the password: what follows may be
	 * binary and stays pending, whatever a further line_take() says of it. */
	{"pipelined rest", "u\np\nbinary\x01", 0, {"u", "p"}, LINE_BAD_CHAR, "binary\x01"},
	{"nul", "al\0ice\n", 7, {NULL}, LINE_BAD_CHAR, NULL},
	{"tab", "al\tice\n", 0, {NULL}, LINE_BAD_CHAR, NULL},
	{"escape", "\x1b[2J\n", 0, {NULL}, LINE_BAD_CHAR, NULL},
	{"delete", "a\x7f\n", 0, {NULL}, LINE_BAD_CHAR, NULL},
	{"bare cr inside", "a\rb\n", 0, {NULL}, LINE_BAD_CHAR, NULL},
	{"utf-8 allowed", "J\xc3\xbcrgen\n", 0, {"J\xc3\xbcrgen"}, LINE_NEED_MORE, ""},
	{"255 bytes", long255, 0, {NULL}, LINE_NEED_MORE, NULL},
	{"256 bytes", long256, 0, {NULL}, LINE_TOO_LONG, NULL},
	{"bad after good", "ok\nb\x01\n", 0, {"ok"}, LINE_BAD_CHAR, NULL},
	/* What telnet sends: option negotiation first, Enter as CR LF or CR NUL. */
	{"telnet negotiation",
	 "\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f"
	 "alice\r\n",
	 0,
	 {"alice"},
	 LINE_NEED_MORE,
	 ""},
	{"telnet inside a line", "al\xff\xf1ice\n", 0, {"alice"}, LINE_NEED_MORE, ""},
	{"telnet subnegotiation",
	 "\xff\xfa\x18\x00xterm\xff\xf0"
	 "bob\n",
	 15,
	 {"bob"},
	 LINE_NEED_MORE,
	 ""},
	{"telnet escaped 0xff",
	 "a\xff\xff"
	 "b\n",
	 0,
	 {"a\xff"
	  "b"},
	 LINE_NEED_MORE,
	 ""},
	{"telnet cr nul",
	 "alice\r\0secret\r\0",
	 5 + 2 + 6 + 2,
	 {"alice", "secret"},
	 LINE_NEED_MORE,
	 ""},
	{"telnet cr nul then crlf",
	 "alice\r\0\r\nsecret\r\0\n",
	 5 + 4 + 6 + 3,
	 {"alice", "secret"},
	 LINE_NEED_MORE,
	 ""},
	{"relay data untouched",
	 "u\np\n\xff\xfd\x01raw",
	 0,
	 {"u", "p"},
	 LINE_NEED_MORE,
	 "\xff\xfd\x01raw"},
};

static void feed(struct line_reader *r, const char *data, size_t n)
{
	char *at;
	size_t room = line_space(r, &at);

	assert_true(n <= room);
	memcpy(at, data, n);
	line_commit(r, n);
}

/* Runs one case, feeding chunk bytes at a time, taking lines as they come. */
static void run_case(const struct line_case *c, size_t chunk)
{
	struct line_reader r;
	size_t len = c->input_len ? c->input_len : strlen(c->input);
	size_t got = 0, fed = 0;
	enum line_result res = LINE_NEED_MORE;

	memset(&r, 0, sizeof(r));
	while (fed < len) {
		size_t n = len - fed < chunk ? len - fed : chunk;
		char *line;
		size_t llen;

		feed(&r, c->input + fed, n);
		fed += n;
		while ((res = line_take(&r, &line, &llen)) == LINE_OK) {
			if (c->lines[got] == NULL)
				fail_msg("%s: unexpected line \"%s\"", c->name, line);
			assert_string_equal(line, c->lines[got]);
			assert_int_equal(llen, strlen(c->lines[got]));
			got++;
		}
		if (res != LINE_NEED_MORE)
			break;
	}
	if (res != c->end)
		fail_msg("%s: ended with %s, expected %s", c->name, line_result_str(res),
			 line_result_str(c->end));
	if (c->lines[got] != NULL)
		fail_msg("%s: line \"%s\" missing", c->name, c->lines[got]);
	if (c->rest != NULL) {
		const char *data;
		size_t n = line_pending(&r, &data);

		assert_int_equal(n, strlen(c->rest));
		assert_memory_equal(data, c->rest, n);
	}
	line_wipe(&r);
	for (size_t i = 0; i < sizeof(r.buf); i++)
		assert_int_equal(r.buf[i], 0);
}

static void whole_input(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i], SIZE_MAX);
}

static void byte_at_a_time(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i], 1);
}

static void exact_limit_with_newline(void **state)
{
	struct line_reader r;
	char in[LINE_MAX_LEN + 2], *line;
	size_t len;

	(void)state;
	memset(&r, 0, sizeof(r));
	memset(in, 'x', LINE_MAX_LEN);
	in[LINE_MAX_LEN] = '\r';
	in[LINE_MAX_LEN + 1] = '\n';
	feed(&r, in, sizeof(in));
	assert_int_equal(line_take(&r, &line, &len), LINE_OK);
	assert_int_equal(len, LINE_MAX_LEN);
}

static void buffer_never_overflows(void **state)
{
	struct line_reader r;
	char *at, *line;
	size_t len;

	(void)state;
	memset(&r, 0, sizeof(r));
	/* Lines of 10 bytes, far more than the buffer holds, taken as they come. */
	for (int i = 0; i < 1000; i++) {
		size_t room = line_space(&r, &at);

		assert_true(room >= 10);
		memcpy(at, "123456789\n", 10);
		line_commit(&r, 10);
		assert_int_equal(line_take(&r, &line, &len), LINE_OK);
		assert_string_equal(line, "123456789");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(whole_input),
		cmocka_unit_test(byte_at_a_time),
		cmocka_unit_test(exact_limit_with_newline),
		cmocka_unit_test(buffer_never_overflows),
	};

	memset(long255, 'a', 255);
	memset(long256, 'a', 256);
	return test_exit(cmocka_run_group_tests_name("line", tests, NULL, NULL));
}
