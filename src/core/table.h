/* table: rows of text cells for sockgatectl's answers, rendered as an aligned
 * table for people or as JSON (an array of objects keyed by the column names)
 * for scripts. */
#ifndef SOCKGATE_TABLE_H
#define SOCKGATE_TABLE_H

#include <stdbool.h>
#include <stddef.h>

struct table;

/* A table with n columns named by columns (copied). A name that starts with
 * '#' (the '#' is not part of it) is a count: JSON shows its cells as numbers
 * (null when empty). NULL if out of memory. */
struct table *table_new(const char *const *columns, size_t n);
void table_free(struct table *t);
/* Appends a row of n cells (copied; NULL is an empty cell). -1 if out of memory. */
int table_add(struct table *t, const char *const *cells);
size_t table_rows(const struct table *t);
/* The table as text (json false: a header line and aligned columns) or JSON,
 * appended to *out (realloc'd; *len updated). -1 if out of memory. */
int table_render(const struct table *t, bool json, char **out, size_t *len);

#endif
