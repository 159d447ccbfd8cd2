/* test_checker: the password-check child processes. Real forks: each child's
 * answer equals crypt_r's, it runs in a session of its own at SCHED_IDLE with
 * nothing open but its channel, a dead child is reported (and the others go
 * on), and checker_free reaps them all. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "checker.h"

static struct checker *spawn(unsigned n)
{
	struct errbuf err;
	struct checker *c = checker_spawn(n, &err);

	if (c == NULL)
		fail_msg("checker_spawn: %s", err.msg);
	return c;
}

/* crypt on child i of c; returns a static copy of the output. */
static const char *remote(struct checker *c, unsigned i, const char *phrase, const char *setting)
{
	static struct crypt_data data;

	memset(&data, 0, sizeof(data));
	snprintf(data.input, sizeof(data.input), "%s", phrase);
	assert_int_equal(checker_crypt(c, i, setting, &data), 0);
	return data.output;
}

static void test_matches_crypt_r(void **state)
{
	static const char *const prefixes[] = {"$y$", "$2b$", "$6$", "$5$"};
	struct checker *c = spawn(2);
	struct crypt_data local;

	(void)state;
	for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++) {
		char setting[CRYPT_GENSALT_OUTPUT_SIZE];
		char *want;

		/* The cheapest cost of each method: the test is about the channel. */
		assert_non_null(crypt_gensalt_rn(prefixes[k], strcmp(prefixes[k], "$2b$") == 0 ? 4 : 1,
						 NULL, 0, setting, sizeof(setting)));
		memset(&local, 0, sizeof(local));
		want = crypt_r("correct horse", setting, &local);
		assert_non_null(want);
		for (unsigned i = 0; i < 2; i++) {
			/* A hash of the password checks it; another password differs. */
			assert_string_equal(remote(c, i, "correct horse", setting), want);
			assert_string_equal(remote(c, i, "correct horse", want), want);
			assert_string_not_equal(remote(c, i, "wrong horse", want), want);
		}
	}
	checker_free(c);
}

static void test_bad_setting_fails_like_crypt(void **state)
{
	struct checker *c = spawn(1);
	char longsetting[CRYPT_OUTPUT_SIZE + 10];

	(void)state;
	assert_int_equal(remote(c, 0, "pw", "!locked")[0], '*');
	assert_int_equal(remote(c, 0, "pw", "$y$")[0], '*');
	memset(longsetting, 'a', sizeof(longsetting) - 1);
	longsetting[sizeof(longsetting) - 1] = '\0';
	assert_int_equal(remote(c, 0, "pw", longsetting)[0], '*');
	/* The child still answers after those. */
	assert_string_equal(remote(c, 0, "pw", "$6$salt$"), crypt("pw", "$6$salt$"));
	checker_free(c);
}

static int count_fds(pid_t pid, int *max_fd)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	assert_non_null(d);
	*max_fd = -1;
	while ((e = readdir(d)) != NULL) {
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		if (fd > *max_fd)
			*max_fd = fd;
		n++;
	}
	closedir(d);
	return n;
}

static void test_child_is_isolated_and_idle(void **state)
{
	int stray = open("/dev/null", O_RDONLY); /* the daemon's: not the child's */
	struct checker *c;
	pid_t pid;
	int max_fd;

	(void)state;
	assert_true(stray >= 0);
	c = spawn(1);
	pid = checker_pid(c, 0);
	/* Answering once proves the child finished setting itself up. */
	assert_string_equal(remote(c, 0, "pw", "$6$salt$"), crypt("pw", "$6$salt$"));
	assert_int_equal(getsid(pid), pid);
	assert_int_not_equal(getsid(pid), getsid(0));
	assert_int_equal(sched_getscheduler(pid), SCHED_IDLE);
	assert_true(count_fds(pid, &max_fd) <= 4);
	assert_int_equal(max_fd, 3);
	{
		char path[64], buf[128] = "";
		FILE *f;

		/* Where the kernel has autogroups, the child's is at nice 19. */
		snprintf(path, sizeof(path), "/proc/%d/autogroup", (int)pid);
		f = fopen(path, "r");
		if (f != NULL) {
			assert_non_null(fgets(buf, sizeof(buf), f));
			fclose(f);
			assert_non_null(strstr(buf, "nice 19"));
		}
	}
	checker_free(c);
	close(stray);
}

static void test_dead_child_reported(void **state)
{
	struct checker *c = spawn(2);
	struct crypt_data data;

	(void)state;
	assert_int_equal(kill(checker_pid(c, 0), SIGKILL), 0);
	memset(&data, 0, sizeof(data));
	snprintf(data.input, sizeof(data.input), "pw");
	assert_int_equal(checker_crypt(c, 0, "$6$salt$", &data), -1);
	/* The other child is not disturbed. */
	assert_string_equal(remote(c, 1, "pw", "$6$salt$"), crypt("pw", "$6$salt$"));
	checker_free(c);
}

static void test_free_reaps_children(void **state)
{
	struct checker *c = spawn(3);
	pid_t pids[3];

	(void)state;
	for (unsigned i = 0; i < 3; i++)
		pids[i] = checker_pid(c, i);
	checker_free(c);
	for (unsigned i = 0; i < 3; i++) {
		errno = 0;
		assert_int_equal(waitpid(pids[i], NULL, WNOHANG), -1);
		assert_int_equal(errno, ECHILD);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_crypt_r),
		cmocka_unit_test(test_bad_setting_fails_like_crypt),
		cmocka_unit_test(test_child_is_isolated_and_idle),
		cmocka_unit_test(test_dead_child_reported),
		cmocka_unit_test(test_free_reaps_children),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
