/* errbuf: a fixed-size error message a failing call fills in for its caller.
 * Functions that can fail return 0 / -1 (or NULL) and describe the failure here,
 * so callers decide how to report it (log line, stderr, test assertion). */
#ifndef SOCKGATE_ERRBUF_H
#define SOCKGATE_ERRBUF_H

#include <stddef.h>

#define ERRBUF_LEN 512

struct errbuf {
	char msg[ERRBUF_LEN];
};

/* Formats into err (if err is non-NULL) and returns -1, so a failure path reads
 * `return errbuf_set(err, "...", ...);`. */
int errbuf_set(struct errbuf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* As errbuf_set, appending ": strerror(errnum)". */
int errbuf_errno(struct errbuf *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
