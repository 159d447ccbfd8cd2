/* user_sessions: per-user session counts (see user_sessions.h). */
#include "user_sessions.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define USER_SESSIONS_BUCKETS 256

struct user_count {
	struct user_count *next;
	unsigned sessions;
	char user[]; /* NUL-terminated */
};

struct user_sessions {
	pthread_mutex_t lock;
	struct user_count *buckets[USER_SESSIONS_BUCKETS];
};

struct user_sessions *user_sessions_create(void)
{
	struct user_sessions *us = calloc(1, sizeof(*us));

	if (us != NULL)
		pthread_mutex_init(&us->lock, NULL);
	return us;
}

void user_sessions_free(struct user_sessions *us)
{
	if (us == NULL)
		return;
	for (size_t i = 0; i < USER_SESSIONS_BUCKETS; i++) {
		while (us->buckets[i] != NULL) {
			struct user_count *c = us->buckets[i];

			us->buckets[i] = c->next;
			free(c);
		}
	}
	pthread_mutex_destroy(&us->lock);
	free(us);
}

/* FNV-1a: user names are short, and the table only spreads them. */
static struct user_count **user_slot(struct user_sessions *us, const char *user)
{
	uint32_t h = 2166136261u;
	struct user_count **p;

	for (const char *c = user; *c != '\0'; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	for (p = &us->buckets[h % USER_SESSIONS_BUCKETS]; *p != NULL; p = &(*p)->next)
		if (strcmp((*p)->user, user) == 0)
			break;
	return p;
}

bool user_sessions_take(struct user_sessions *us, const char *user, unsigned max)
{
	struct user_count **p;
	bool ok = false;

	pthread_mutex_lock(&us->lock);
	p = user_slot(us, user);
	if (*p == NULL) {
		size_t len = strlen(user);

		*p = calloc(1, sizeof(**p) + len + 1);
		if (*p != NULL)
			memcpy((*p)->user, user, len + 1);
	}
	if (*p != NULL && (max == 0 || (*p)->sessions < max)) {
		(*p)->sessions++;
		ok = true;
	}
	pthread_mutex_unlock(&us->lock);
	return ok;
}

void user_sessions_drop(struct user_sessions *us, const char *user)
{
	struct user_count **p, *gone = NULL;

	pthread_mutex_lock(&us->lock);
	p = user_slot(us, user);
	if (*p != NULL && --(*p)->sessions == 0) {
		gone = *p;
		*p = gone->next;
	}
	pthread_mutex_unlock(&us->lock);
	free(gone);
}

unsigned user_sessions_count(struct user_sessions *us, const char *user)
{
	struct user_count **p;
	unsigned n;

	pthread_mutex_lock(&us->lock);
	p = user_slot(us, user);
	n = *p != NULL ? (*p)->sessions : 0;
	pthread_mutex_unlock(&us->lock);
	return n;
}
