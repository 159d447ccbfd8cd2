/* logtap: a log pipe drained by a thread into memory (see logtap.h). */
#include "logtap.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct logtap {
	int fd;
	int stop_pipe[2];
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *buf; /* everything logged, NUL-terminated */
	size_t len, cap;
	size_t *line_starts; /* offsets of complete lines */
	size_t n_lines, lines_cap;
	size_t scan; /* where the next line starts */
	int closed;
};

static void logtap_append(struct logtap *t, const char *data, size_t n)
{
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 65536;

		while (t->len + n + 1 > cap)
			cap *= 2;
		t->buf = realloc(t->buf, cap);
		if (t->buf == NULL)
			abort();
		t->cap = cap;
	}
	memcpy(t->buf + t->len, data, n);
	t->len += n;
	t->buf[t->len] = '\0';
	for (size_t i = t->len - n; i < t->len; i++) {
		if (t->buf[i] != '\n')
			continue;
		if (t->n_lines == t->lines_cap) {
			t->lines_cap = t->lines_cap ? t->lines_cap * 2 : 1024;
			t->line_starts = realloc(t->line_starts, t->lines_cap * sizeof(size_t));
			if (t->line_starts == NULL)
				abort();
		}
		t->line_starts[t->n_lines++] = t->scan;
		t->scan = i + 1;
	}
}

static void *logtap_thread(void *arg)
{
	struct logtap *t = arg;
	char chunk[8192];

	for (;;) {
		struct pollfd p[2] = {{t->fd, POLLIN, 0}, {t->stop_pipe[0], POLLIN, 0}};
		ssize_t n;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(t->fd, chunk, sizeof(chunk));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		pthread_mutex_lock(&t->lock);
		if (n <= 0) {
			t->closed = 1;
			pthread_cond_broadcast(&t->cond);
			pthread_mutex_unlock(&t->lock);
			break;
		}
		logtap_append(t, chunk, (size_t)n);
		pthread_cond_broadcast(&t->cond);
		pthread_mutex_unlock(&t->lock);
	}
	return NULL;
}

struct logtap *logtap_start(int fd)
{
	struct logtap *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->fd = fd;
	if (pipe(t->stop_pipe) < 0) {
		free(t);
		return NULL;
	}
	pthread_mutex_init(&t->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&t->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	logtap_append(t, "", 0);
	if (pthread_create(&t->thread, NULL, logtap_thread, t) != 0) {
		close(t->stop_pipe[0]);
		close(t->stop_pipe[1]);
		free(t->buf);
		free(t);
		return NULL;
	}
	return t;
}

void logtap_stop(struct logtap *t)
{
	if (t == NULL)
		return;
	(void)!write(t->stop_pipe[1], "x", 1);
	pthread_join(t->thread, NULL);
	close(t->stop_pipe[0]);
	close(t->stop_pipe[1]);
	close(t->fd);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	free(t->line_starts);
	free(t->buf);
	free(t);
}

int logtap_wait(struct logtap *t, const char *needle, size_t *cursor, char *line, size_t len,
		int timeout_ms)
{
	struct timespec deadline;
	size_t from = cursor != NULL ? *cursor : 0;
	int rc = -1;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&t->lock);
	for (;;) {
		for (; from < t->n_lines; from++) {
			size_t s = t->line_starts[from];
			size_t e = from + 1 < t->n_lines ? t->line_starts[from + 1] : t->scan;
			char *nl = memchr(t->buf + s, '\n', e - s);
			size_t n = nl != NULL ? (size_t)(nl - (t->buf + s)) : e - s;
			char saved = t->buf[s + n];

			t->buf[s + n] = '\0';
			if (strstr(t->buf + s, needle) != NULL) {
				if (line != NULL)
					snprintf(line, len, "%s", t->buf + s);
				t->buf[s + n] = saved;
				if (cursor != NULL)
					*cursor = from + 1;
				rc = 0;
				goto out;
			}
			t->buf[s + n] = saved;
		}
		if (t->closed)
			break;
		if (pthread_cond_timedwait(&t->cond, &t->lock, &deadline) == ETIMEDOUT)
			break;
	}
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

unsigned logtap_count(struct logtap *t, const char *needle)
{
	unsigned n = 0;
	size_t cursor = 0;

	while (logtap_wait(t, needle, &cursor, NULL, 0, 0) == 0)
		n++;
	return n;
}

int logtap_contains(struct logtap *t, const char *needle)
{
	int found;

	pthread_mutex_lock(&t->lock);
	found = strstr(t->buf, needle) != NULL;
	pthread_mutex_unlock(&t->lock);
	return found;
}

size_t logtap_lines(struct logtap *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->n_lines;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void logtap_dump(struct logtap *t, const char *title)
{
	pthread_mutex_lock(&t->lock);
	fprintf(stderr, "---- %s ----\n%s---- end of %s ----\n", title, t->buf, title);
	pthread_mutex_unlock(&t->lock);
}
