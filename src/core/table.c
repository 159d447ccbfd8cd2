/* table: text and JSON renderings of rows (see table.h). */
#include "table.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct table {
	size_t n_cols, n_rows, cap;
	char **cols;
	bool *numeric; /* per column: JSON numbers */
	char **cells;  /* n_rows * n_cols */
};

struct table *table_new(const char *const *columns, size_t n)
{
	struct table *t = calloc(1, sizeof(*t));

	if (t == NULL || (t->cols = calloc(n, sizeof(*t->cols))) == NULL ||
	    (t->numeric = calloc(n, sizeof(*t->numeric))) == NULL) {
		if (t != NULL)
			free(t->cols);
		free(t);
		return NULL;
	}
	t->n_cols = n;
	for (size_t i = 0; i < n; i++) {
		t->numeric[i] = columns[i][0] == '#';
		if ((t->cols[i] = strdup(columns[i] + t->numeric[i])) == NULL) {
			table_free(t);
			return NULL;
		}
	}
	return t;
}

void table_free(struct table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_cols; i++)
		free(t->cols[i]);
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cols);
	free(t->numeric);
	free(t->cells);
	free(t);
}

int table_add(struct table *t, const char *const *cells)
{
	if (t->n_rows == t->cap) {
		size_t cap = t->cap == 0 ? 16 : t->cap * 2;
		char **grown = realloc(t->cells, cap * t->n_cols * sizeof(*grown));

		if (grown == NULL)
			return -1;
		t->cells = grown;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->n_cols; i++) {
		char *c = strdup(cells[i] != NULL ? cells[i] : "");

		if (c == NULL) {
			for (size_t j = 0; j < i; j++)
				free(t->cells[t->n_rows * t->n_cols + j]);
			return -1;
		}
		t->cells[t->n_rows * t->n_cols + i] = c;
	}
	t->n_rows++;
	return 0;
}

size_t table_rows(const struct table *t)
{
	return t->n_rows;
}

/* The text being rendered. It grows by doubling: a JSON answer is built a
 * character at a time, and a realloc() each would make it quadratic. */
struct tbuf {
	char *p;
	size_t len, cap;
};

static int put(struct tbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap < 4096 ? 4096 : b->cap;
		char *grown;

		while (cap < b->len + n + 1)
			cap *= 2;
		grown = realloc(b->p, cap);
		if (grown == NULL)
			return -1;
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int json_string(struct tbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	int rc = put(b, "\"", 1);

	for (const unsigned char *c = (const unsigned char *)s; *c != '\0' && rc == 0; c++) {
		char esc[8];

		if (*c == '"' || *c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*c;
			rc = put(b, esc, 2);
		} else if (*c < 0x20 || *c >= 0x7f) {
			/* Logs and names are ASCII; anything else is shown by code. */
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*c >> 4];
			esc[5] = hex[*c & 15];
			rc = put(b, esc, 6);
		} else {
			rc = put(b, (const char *)c, 1);
		}
	}
	return rc == 0 ? put(b, "\"", 1) : -1;
}

/* A count's cell as a JSON number when it is one; anything else as text. */
static int json_cell(struct tbuf *b, const struct table *t, size_t c, const char *cell)
{
	size_t n = strlen(cell);

	if (!t->numeric[c])
		return json_string(b, cell);
	if (n == 0)
		return put(b, "null", 4);
	if (strspn(cell, "0123456789") == n && (cell[0] != '0' || n == 1))
		return put(b, cell, n);
	return json_string(b, cell);
}

static int render(const struct table *t, bool json, struct tbuf *b)
{
	const char *cell;
	int rc = 0;

	if (json) {
		rc = put(b, "[", 1);
		for (size_t r = 0; r < t->n_rows && rc == 0; r++) {
			rc = put(b, r == 0 ? "{" : ",{", r == 0 ? 1 : 2);
			for (size_t c = 0; c < t->n_cols && rc == 0; c++) {
				cell = t->cells[r * t->n_cols + c];
				rc = (c > 0 ? put(b, ",", 1) : 0) | json_string(b, t->cols[c]) |
				     put(b, ":", 1) | json_cell(b, t, c, cell);
			}
			rc |= put(b, "}", 1);
		}
		return rc | put(b, "]\n", 2);
	}
	{
		size_t *w = calloc(t->n_cols, sizeof(*w));

		if (w == NULL)
			return -1;
		for (size_t c = 0; c < t->n_cols; c++) {
			w[c] = strlen(t->cols[c]);
			for (size_t r = 0; r < t->n_rows; r++) {
				size_t l = strlen(t->cells[r * t->n_cols + c]);

				w[c] = l > w[c] ? l : w[c];
			}
		}
		for (size_t r = 0; r <= t->n_rows && rc == 0; r++) {
			for (size_t c = 0; c < t->n_cols && rc == 0; c++) {
				char pad[256];
				size_t l;

				cell = r == 0 ? t->cols[c] : t->cells[(r - 1) * t->n_cols + c];
				l = strlen(cell);
				rc = put(b, cell, l);
				if (c + 1 < t->n_cols && rc == 0) {
					size_t gap = w[c] - l + 2;

					while (gap > 0 && rc == 0) {
						size_t chunk =
							gap < sizeof(pad) ? gap : sizeof(pad);

						memset(pad, ' ', chunk);
						rc = put(b, pad, chunk);
						gap -= chunk;
					}
				}
			}
			/* Empty last cells leave no trailing blanks. */
			while (rc == 0 && b->len > 0 && b->p[b->len - 1] == ' ')
				b->len--;
			rc |= put(b, "\n", 1);
		}
		free(w);
	}
	return rc;
}

int table_render(const struct table *t, bool json, char **out, size_t *len)
{
	struct tbuf b = {NULL, 0, 0};
	char *grown;

	if (render(t, json, &b) < 0 || (grown = realloc(*out, *len + b.len + 1)) == NULL) {
		free(b.p);
		return -1;
	}
	memcpy(grown + *len, b.p, b.len + 1);
	*len += b.len;
	*out = grown;
	free(b.p);
	return 0;
}
