/* file: reads a whole small file (configuration, credentials, keys and
 * certificates) into memory. Only a regular file is read; opening a FIFO planted
 * in its place cannot block; and no more than max_bytes are read even if the
 * file grows meanwhile. Symlinks are followed: credential directories use them,
 * and the checks apply to what was opened. */
#ifndef SOCKGATE_FILE_H
#define SOCKGATE_FILE_H

#include <stddef.h>
#include <sys/stat.h>

#include "errbuf.h"

/* The file's bytes, NUL-terminated (*len does not count the NUL), in a buffer
 * to free with file_free(); *st is what fstat() said of the file opened. NULL
 * with "PATH: cannot open: ...", "PATH: not a regular file", "PATH: larger than
 * N MiB" (or bytes) in err. */
char *file_read(const char *path, size_t max_bytes, struct stat *st, size_t *len,
		struct errbuf *err);

/* Wipes (the file may hold secrets) and frees what file_read() returned. */
void file_free(char *text, size_t len);

/* "16 MiB", or "1000 bytes" for a size that is no whole number of MiB. */
void file_format_size(size_t bytes, char *buf, size_t len);

#endif
