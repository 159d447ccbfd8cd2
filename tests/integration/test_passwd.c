/* Integration tests for sockgate-passwd: runs the built program on real files
 * in a temporary directory and checks exit status, messages, the bytes written,
 * mode and owner, and that no temporary file is ever left behind. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include <crypt.h>

#include "credentials.h"
#include "harness.h"

#ifndef SOCKGATE_BIN_DIR
#error "SOCKGATE_BIN_DIR must name the directory of the built programs"
#endif

#define TOOL       SOCKGATE_BIN_DIR "/sockgate-passwd"
#define TIMEOUT_MS ((int)harness_scale(30000, 120000))

/* Known hashes (see the credentials unit tests) for pre-existing lines. */
#define H6                                                                                         \
	"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/"                                       \
	"O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
#define H5 "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"

enum run_flags {
	RUN_FSIZE_LIMIT = 1 << 0, /* the tool may not write files over 16 bytes */
};

struct run {
	int status; /* exit status, or 128 + signal */
	char out[8192];
	char err[8192];
	char tty[8192]; /* what the tool wrote to its terminal (run_tool_tty) */
};

/* One exchange on the tool's terminal: wait for prompt, then type line. */
struct tty_step {
	const char *prompt;
	const char *line;
};

struct fixture {
	char dir[64];
	char path[128]; /* dir/users */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void child_exec(char *const argv[], int in, int out, int err, unsigned flags)
{
	/* A new session has no controlling terminal, so the tool can never
	 * prompt on the terminal that runs the tests. */
	setsid();
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(126);
	if (flags & RUN_FSIZE_LIMIT) {
		struct rlimit rl = {16, 16};

		/* Writes then fail with EFBIG instead of killing the tool. */
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
	}
	execv(argv[0], argv);
	_exit(127);
}

/* Drains out and err into r until both reach EOF or the deadline passes. */
static int drain(int out, int err, struct run *r, long long deadline)
{
	struct pollfd pfd[2] = {{.fd = out, .events = POLLIN}, {.fd = err, .events = POLLIN}};
	char *buf[2] = {r->out, r->err};
	size_t len[2] = {0, 0};
	int open_fds = 2;

	while (open_fds > 0) {
		long long left = deadline - now_ms();

		if (left <= 0 || poll(pfd, 2, (int)left) <= 0)
			return -1;
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (pfd[i].fd < 0 || pfd[i].revents == 0)
				continue;
			n = read(pfd[i].fd, buf[i] + len[i], sizeof(r->out) - 1 - len[i]);
			if (n > 0) {
				len[i] += (size_t)n;
				buf[i][len[i]] = '\0';
			} else if (n == 0 || errno != EINTR) {
				pfd[i].fd = -1;
				open_fds--;
			}
		}
	}
	return 0;
}

/* Runs the tool with the given arguments (NULL-terminated) and input on stdin
 * (NULL for none, i.e. an empty pipe); under SOCKGATE_TEST_WRAPPER if set, whose
 * verdict on the tool's memory fails the test. */
static void run_tool(struct run *r, const char *input, unsigned flags, ...)
{
	const char *const *wrapper = harness_wrapper();
	char *argv[96];
	int in[2], out[2], err[2], ws, argc = 0;
	long long deadline = now_ms() + TIMEOUT_MS;
	va_list ap;
	pid_t pid;

	while (wrapper != NULL && wrapper[argc] != NULL) {
		argv[argc] = (char *)wrapper[argc];
		assert_true(++argc < 80);
	}
	argv[argc++] = (char *)TOOL;
	va_start(ap, flags);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		assert_true(++argc < 95);
	va_end(ap);
	memset(r, 0, sizeof(*r));
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_exec(argv, in[0], out[1], err[1], flags);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	/* Inputs are far smaller than a pipe buffer, so this cannot block. */
	if (input != NULL)
		assert_int_equal(write(in[1], input, strlen(input)), (ssize_t)strlen(input));
	close(in[1]);
	if (drain(out[0], err[0], r, deadline) < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("sockgate-passwd did not finish within %d ms", TIMEOUT_MS);
	}
	close(out[0]);
	close(err[0]);
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
	if (WIFEXITED(ws) && harness_wrapper_failed(r->status))
		fail_msg("sockgate-passwd: SOCKGATE_TEST_WRAPPER found errors (exit code %d):\n%s",
			 r->status, r->err);
}

/* Appends what fd has now to buf (cap bytes, kept NUL-terminated). Returns 0,
 * or -1 at EOF; a pty master reads EIO once the last slave is closed. */
static int take(int fd, char *buf, size_t cap)
{
	size_t len = strlen(buf);
	ssize_t n = read(fd, buf + len, cap - 1 - len);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0)
		return -1;
	buf[len + (size_t)n] = '\0';
	return 0;
}

/* Runs the tool with a new pseudo-terminal as its controlling terminal (so it
 * prompts on /dev/tty, as for a person) and stdin from /dev/null. For each step,
 * waits until the terminal shows the step's prompt, then types its line; after
 * the last, any further prompt fails the test at once rather than leaving the
 * tool waiting. Arguments as for run_tool(). */
static void run_tool_tty(struct run *r, const struct tty_step *steps, size_t nsteps, ...)
{
	const char *const *wrapper = harness_wrapper();
	char *argv[96], name[128], *bufs[3] = {r->tty, r->out, r->err};
	int master, slave, out[2], err[2], fds[3], ws, argc = 0;
	long long deadline = now_ms() + TIMEOUT_MS;
	size_t step = 0, seen = 0;
	va_list ap;
	pid_t pid;

	while (wrapper != NULL && wrapper[argc] != NULL) {
		argv[argc] = (char *)wrapper[argc];
		assert_true(++argc < 80);
	}
	argv[argc++] = (char *)TOOL;
	va_start(ap, nsteps);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		assert_true(++argc < 95);
	va_end(ap);
	memset(r, 0, sizeof(*r));
	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(master >= 0);
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	assert_int_equal(ptsname_r(master, name, sizeof(name)), 0);
	/* Ours keeps the terminal open, so the master never reads EIO (no
	 * slave) before the child has opened it. */
	slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(slave >= 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int tty;

		/* A session leader's first terminal opened without O_NOCTTY
		 * becomes its controlling terminal. */
		setsid();
		tty = open(name, O_RDWR | O_CLOEXEC);
		if (tty < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out[1], 1) < 0 ||
		    dup2(err[1], 2) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	/* The terminal, stdout, stderr; done when both pipes are at EOF. */
	fds[0] = master;
	fds[1] = out[0];
	fds[2] = err[0];
	for (int i = 0; i < 3; i++)
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
	while (fds[1] >= 0 || fds[2] >= 0) {
		struct pollfd pfd[3];
		long long left = deadline - now_ms();
		const char *shown;

		for (int i = 0; i < 3; i++)
			pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
		if (left <= 0 || poll(pfd, 3, (int)left) <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail_msg("sockgate-passwd did not finish within %d ms; terminal: %s",
				 TIMEOUT_MS, r->tty);
		}
		for (int i = 0; i < 3; i++) {
			if (pfd[i].fd >= 0 && pfd[i].revents != 0 &&
			    take(fds[i], bufs[i], sizeof(r->tty)) < 0) {
				close(fds[i]);
				fds[i] = -1;
			}
		}
		shown = r->tty + seen;
		if (step < nsteps && strstr(shown, steps[step].prompt) != NULL) {
			seen = strlen(r->tty);
			assert_int_equal(harness_write_all(fds[0], steps[step].line,
							   strlen(steps[step].line), TIMEOUT_MS),
					 0);
			step++;
		} else if (step == nsteps && strstr(shown, ": ") != NULL) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail_msg("sockgate-passwd asked again after the last line: %s", shown);
		}
	}
	if (fds[0] >= 0)
		close(fds[0]);
	close(slave);
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
	if (WIFEXITED(ws) && harness_wrapper_failed(r->status))
		fail_msg("sockgate-passwd: SOCKGATE_TEST_WRAPPER found errors (exit code %d):\n%s",
			 r->status, r->err);
	if (step < nsteps)
		fail_msg("sockgate-passwd exited before the prompt \"%s\"; stderr: %s",
			 steps[step].prompt, r->err);
}

static void expect_status(const struct run *r, int status, const char *in_stderr)
{
	if (r->status != status)
		fail_msg("exit %d, expected %d; stderr: %s", r->status, status, r->err);
	if (in_stderr != NULL && strstr(r->err, in_stderr) == NULL)
		fail_msg("stderr lacks \"%s\": %s", in_stderr, r->err);
}

static size_t file_get(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, size - 1);
	assert_true(n >= 0 && (size_t)n < size - 1);
	buf[n] = '\0';
	close(fd);
	return (size_t)n;
}

/* Writes a password of len bytes and a newline into buf (len + 2 bytes): a
 * printable pattern whose last byte is last, so that two calls differing only
 * in last give passwords that differ only after their first len - 1 bytes. */
static const char *password_line(char *buf, size_t len, char last)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('0' + (i * 7) % 75);
	buf[len - 1] = last;
	buf[len] = '\n';
	buf[len + 1] = '\0';
	return buf;
}

/* The whole file and its identity, to show a refused change left it alone. */
struct snapshot {
	char text[4096];
	size_t len;
	struct stat st;
};

static void snapshot_take(const char *path, struct snapshot *s)
{
	s->len = file_get(path, s->text, sizeof(s->text));
	assert_int_equal(stat(path, &s->st), 0);
}

static void snapshot_expect_same(const char *path, const struct snapshot *before)
{
	struct snapshot now;

	snapshot_take(path, &now);
	assert_int_equal(now.len, before->len);
	assert_memory_equal(now.text, before->text, before->len);
	/* Not even rewritten with the same bytes. */
	assert_int_equal(now.st.st_ino, before->st.st_ino);
	assert_int_equal(now.st.st_mtim.tv_sec, before->st.st_mtim.tv_sec);
	assert_int_equal(now.st.st_mtim.tv_nsec, before->st.st_mtim.tv_nsec);
}

static void file_put(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* Fails if dir holds anything but the names given (NULL-terminated): a
 * leftover temporary file shows up here. */
static void expect_dir_holds(const char *dir, ...)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		const char *name;
		bool known = false;
		va_list ap;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		va_start(ap, dir);
		while ((name = va_arg(ap, const char *)) != NULL)
			known = known || strcmp(name, de->d_name) == 0;
		va_end(ap);
		if (!known) {
			closedir(d);
			fail_msg("unexpected file %s/%s", dir, de->d_name);
		}
	}
	closedir(d);
}

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/test_passwd.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/users", f->dir);
	*state = f;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void test_create_and_verify(void **state)
{
	struct fixture *f = *state;
	struct run r;
	struct stat st;
	char text[1024];

	run_tool(&r, "first secret\n", 0, "-c", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	file_get(f->path, text, sizeof(text));
	assert_int_equal(strncmp(text, "alice:$y$", 9), 0);
	assert_int_equal(text[strlen(text) - 1], '\n');
	assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1); /* one line */

	run_tool(&r, "first secret\n", 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, "first secreT\n", 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 1, "wrong password for alice");
	run_tool(&r, "first secret\n", 0, "-v", "--stdin", f->path, "bob", NULL);
	expect_status(&r, 1, "no user bob");
	expect_dir_holds(f->dir, "users", NULL);
}

/* Every method the tool offers, and a CRLF-terminated password line. */
static void test_methods(void **state)
{
	static const struct {
		const char *name, *prefix;
	} methods[] = {
		{"yescrypt", "alice:$y$"}, {"bcrypt", "alice:$2b$"}, {"sha512", "alice:$6$"}};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char text[1024];
		struct run r;

		unlink(f->path);
		run_tool(&r, "pw\r\n", 0, "-c", "--stdin", "-m", methods[i].name, f->path, "alice",
			 NULL);
		expect_status(&r, 0, NULL);
		file_get(f->path, text, sizeof(text));
		assert_int_equal(strncmp(text, methods[i].prefix, strlen(methods[i].prefix)), 0);
		run_tool(&r, "pw\n", 0, "-v", "--stdin", f->path, "alice", NULL);
		expect_status(&r, 0, NULL);
	}
}

/* bcrypt hashes only a password's first 72 bytes: a longer new password would
 * be the same as every other that shares them, so it is refused with the
 * reason, whether a user is added, changed or the file created, and the file
 * stays as it was. 72 bytes still go through, and each of them counts. */
static void test_bcrypt_refuses_over_72_bytes(void **state)
{
	static const char msg73[] =
		"sockgate-passwd: password is 73 bytes; bcrypt uses only the "
		"first 72: choose a shorter one or use yescrypt (the default)\n";
	struct fixture *f = *state;
	char pw[CREDENTIALS_MAX_PASSWORD + 2], other[sizeof(pw)], created[192];
	struct snapshot before;
	struct run r;

	file_put(f->path, "bob:" H6 "\n", 0600);
	run_tool(&r, password_line(pw, 72, 'A'), 0, "--stdin", "-m", "bcrypt", f->path, "alice",
		 NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, pw, 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, password_line(other, 72, 'B'), 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 1, "wrong password for alice");

	/* Changing alice's password, then adding carol. */
	snapshot_take(f->path, &before);
	run_tool(&r, password_line(pw, 73, 'A'), 0, "--stdin", "-m", "bcrypt", f->path, "alice",
		 NULL);
	expect_status(&r, 1, NULL);
	assert_string_equal(r.err, msg73);
	assert_string_equal(r.out, "");
	snapshot_expect_same(f->path, &before);
	run_tool(&r, password_line(pw, 100, 'A'), 0, "--stdin", "-m", "bcrypt", f->path, "carol",
		 NULL);
	expect_status(&r, 1, "password is 100 bytes; bcrypt uses only the first 72");
	snapshot_expect_same(f->path, &before);

	/* Creating a file: none appears. */
	snprintf(created, sizeof(created), "%s/new", f->dir);
	run_tool(&r, password_line(pw, 73, 'A'), 0, "-c", "--stdin", "-m", "bcrypt", created,
		 "alice", NULL);
	expect_status(&r, 1, "bcrypt uses only the first 72");
	expect_dir_holds(f->dir, "users", NULL);
}

/* A password no login could send (the gateway refuses control bytes, and
 * crypt(3) stops at a NUL) is refused, and the file stays as it was. */
static void test_control_characters_refused(void **state)
{
	static const char *const bad[] = {"pass\tword\n", "pass\x01word\n", "pass\x7fword\n"};
	struct fixture *f = *state;
	struct snapshot before;
	struct run r;

	file_put(f->path, "bob:" H6 "\n", 0600);
	snapshot_take(f->path, &before);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		run_tool(&r, bad[i], 0, "--stdin", f->path, "alice", NULL);
		expect_status(&r, 1, "the password has a control character (byte 5 is 0x");
		snapshot_expect_same(f->path, &before);
	}
}

/* At the terminal the refusal comes before the retype: nobody types a long
 * password twice for nothing. */
static void test_bcrypt_refuses_over_72_bytes_tty(void **state)
{
	struct fixture *f = *state;
	char pw[CREDENTIALS_MAX_PASSWORD + 2];
	const struct tty_step steps[] = {{"New password for alice: ", pw},
					 {"Retype new password: ", pw}};
	struct snapshot before;
	struct run r;

	file_put(f->path, "bob:" H6 "\n", 0600);
	password_line(pw, 72, 'A');
	run_tool_tty(&r, steps, 2, "-m", "bcrypt", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, pw, 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);

	snapshot_take(f->path, &before);
	password_line(pw, 73, 'A');
	/* One step: a second prompt fails the test at once. */
	run_tool_tty(&r, steps, 1, "-m", "bcrypt", f->path, "alice", NULL);
	expect_status(&r, 1, "password is 73 bytes; bcrypt uses only the first 72");
	assert_null(strstr(r.tty, "Retype"));
	snapshot_expect_same(f->path, &before);
	expect_dir_holds(f->dir, "users", NULL);
}

/* Checking a password is not setting one: a bcrypt hash made elsewhere from a
 * long password still verifies with that password. */
static void test_bcrypt_long_password_verifies(void **state)
{
	static struct crypt_data cd;
	struct fixture *f = *state;
	char pw[CREDENTIALS_MAX_PASSWORD + 2], setting[CRYPT_GENSALT_OUTPUT_SIZE], text[512];
	const char *hash;
	struct run r;

	password_line(pw, 80, 'A');
	pw[80] = '\0';
	assert_non_null(crypt_gensalt_rn("$2b$", 4, NULL, 0, setting, sizeof(setting)));
	hash = crypt_r(pw, setting, &cd);
	assert_true(hash != NULL && strncmp(hash, "$2b$", 4) == 0);
	snprintf(text, sizeof(text), "alice:%s\n", hash);
	file_put(f->path, text, 0600);
	pw[80] = '\n';
	run_tool(&r, pw, 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_string_equal(r.err, "");
}

/* The 72-byte limit is bcrypt's alone; the limit of every method is the most
 * sockgate checks, CREDENTIALS_MAX_PASSWORD, and the message names it. */
static void test_long_passwords_other_methods(void **state)
{
	static const char *const methods[] = {"yescrypt", "sha512"};
	struct fixture *f = *state;
	char pw[CREDENTIALS_MAX_PASSWORD + 3], other[sizeof(pw)], msg[96];
	struct snapshot before;
	struct run r;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		unlink(f->path);
		run_tool(&r, password_line(pw, 100, 'A'), 0, "-c", "--stdin", "-m", methods[i],
			 f->path, "alice", NULL);
		expect_status(&r, 0, NULL);
		run_tool(&r, pw, 0, "-v", "--stdin", f->path, "alice", NULL);
		expect_status(&r, 0, NULL);
		/* The 100th byte counts. */
		run_tool(&r, password_line(other, 100, 'B'), 0, "-v", "--stdin", f->path, "alice",
			 NULL);
		expect_status(&r, 1, "wrong password for alice");
	}

	run_tool(&r, password_line(pw, CREDENTIALS_MAX_PASSWORD, 'A'), 0, "--stdin", f->path,
		 "alice", NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, pw, 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	snapshot_take(f->path, &before);
	snprintf(msg, sizeof(msg), "password longer than %d bytes, the most sockgate checks",
		 CREDENTIALS_MAX_PASSWORD);
	run_tool(&r, password_line(pw, CREDENTIALS_MAX_PASSWORD + 1, 'A'), 0, "--stdin", f->path,
		 "alice", NULL);
	expect_status(&r, 1, msg);
	snapshot_expect_same(f->path, &before);
}

/* A user on another method than the rest is written, with a warning that
 * timing tells the groups apart; the warning goes once they agree again. */
static void test_mixed_methods_warn(void **state)
{
	struct fixture *f = *state;
	struct run r;

	run_tool(&r, "pw-a\n", 0, "-c", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_null(strstr(r.err, "different hash methods"));
	run_tool(&r, "pw-b\n", 0, "--stdin", "-m", "bcrypt", f->path, "bob", NULL);
	expect_status(&r, 0,
		      "have 2 different hash methods or costs: only the largest group "
		      "(1 of 2 users)");
	run_tool(&r, "pw-b\n", 0, "-v", "--stdin", f->path, "bob", NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, "pw-b\n", 0, "--stdin", f->path, "bob", NULL);
	expect_status(&r, 0, NULL);
	assert_null(strstr(r.err, "different hash methods"));
}

/* Changing one password keeps every other byte, the mode and the owner. */
static void test_replace_keeps_rest(void **state)
{
	static const char before_a[] = "# sockgate users\n"
				       "\n"
				       "bob:" H6 "\n"
				       "   # indented comment\r\n"
				       "alice:" H5 "\r\n";
	static const char before_b[] = "carol:" H6 "\n"
				       "# no newline at the end";
	struct fixture *f = *state;
	char before[2048], after[2048];
	bool root = geteuid() == 0;
	struct stat st;
	struct run r;
	const char *tail;
	size_t len;

	snprintf(before, sizeof(before), "%s%s", before_a, before_b);
	file_put(f->path, before, 0640);
	if (root)
		assert_int_equal(chown(f->path, 12345, 12346), 0);

	run_tool(&r, "new alice\n", 0, "--stdin", "-m", "sha512", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	len = file_get(f->path, after, sizeof(after));
	/* Everything before alice's line is unchanged... */
	assert_memory_equal(after, before_a, strlen(before_a) - strlen("alice:" H5 "\r\n"));
	tail = after + strlen(before_a) - strlen("alice:" H5 "\r\n");
	/* ...her line is a new sha512 hash that kept its CRLF... */
	assert_int_equal(strncmp(tail, "alice:$6$", 9), 0);
	tail = strstr(tail, "\r\n");
	assert_non_null(tail);
	/* ...and everything after it is unchanged too, down to the last byte. */
	assert_int_equal(strlen(tail + 2), strlen(before_b));
	assert_string_equal(tail + 2, before_b);
	assert_int_equal(strlen(after), len);

	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	if (root) {
		assert_int_equal(st.st_uid, 12345);
		assert_int_equal(st.st_gid, 12346);
	}
	run_tool(&r, "new alice\n", 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, "Hello world!\n", 0, "-v", "--stdin", f->path, "bob", NULL);
	expect_status(&r, 0, NULL);
	expect_dir_holds(f->dir, "users", NULL);
}

static void test_add_to_file_without_final_newline(void **state)
{
	struct fixture *f = *state;
	char text[2048];
	struct run r;

	file_put(f->path, "bob:" H6, 0600);
	run_tool(&r, "pw\n", 0, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	file_get(f->path, text, sizeof(text));
	assert_int_equal(strncmp(text, "bob:" H6 "\nalice:$y$", strlen("bob:" H6 "\nalice:$y$")),
			 0);
	assert_int_equal(text[strlen(text) - 1], '\n');
}

static void test_delete(void **state)
{
	struct fixture *f = *state;
	char text[2048];
	struct run r;

	file_put(f->path, "# keep\nbob:" H6 "\nalice:" H5 "\ncarol:" H6 "\n", 0640);
	run_tool(&r, NULL, 0, "-D", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "# keep\nbob:" H6 "\ncarol:" H6 "\n");

	run_tool(&r, NULL, 0, "-D", f->path, "alice", NULL);
	expect_status(&r, 1, "no user alice");
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "# keep\nbob:" H6 "\ncarol:" H6 "\n");
	expect_dir_holds(f->dir, "users", NULL);
}

static void test_list(void **state)
{
	struct fixture *f = *state;
	struct run r;

	file_put(f->path, "# users\ncarol:" H6 "\n\nalice:" H5 "\r\n  # x:y\nbob:" H6, 0600);
	run_tool(&r, NULL, 0, "-l", f->path, NULL);
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "carol\nalice\nbob\n");

	/* A file sockgate would refuse is reported, not listed. */
	file_put(f->path, "alice:" H6 "\nbob:s3cr3t\n", 0600);
	run_tool(&r, NULL, 0, "-l", f->path, NULL);
	expect_status(&r, 1, ":2: user \"bob\"");
	assert_null(strstr(r.err, "s3cr3t"));
	assert_string_equal(r.out, "");
}

static void test_refusals(void **state)
{
	struct fixture *f = *state;
	char missing[192], text[1024], msg[64];
	struct run r;

	/* -c never clobbers. */
	file_put(f->path, "bob:" H6 "\n", 0600);
	run_tool(&r, "pw\n", 0, "-c", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 1, "omit -c");
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "bob:" H6 "\n");

	/* Without -c a missing file is an error. */
	snprintf(missing, sizeof(missing), "%s/nothere", f->dir);
	run_tool(&r, "pw\n", 0, "--stdin", missing, "alice", NULL);
	expect_status(&r, 1, "use -c to create it");

	/* Invalid user names are usage errors, whatever the mode. */
	run_tool(&r, "pw\n", 0, "--stdin", f->path, "al ice", NULL);
	expect_status(&r, 2, "invalid user name");
	run_tool(&r, NULL, 0, "-D", f->path, "al:ice", NULL);
	expect_status(&r, 2, "invalid user name");
	run_tool(&r, "pw\n", 0, "--stdin", f->path, "#alice", NULL);
	expect_status(&r, 2, "invalid user name");

	/* Empty and overlong passwords, and no terminal without --stdin. */
	run_tool(&r, "\n", 0, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 1, "empty password");
	run_tool(&r, "", 0, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 1, "empty password");
	memset(text, 'x', 300);
	strcpy(text + 300, "\n");
	run_tool(&r, text, 0, "--stdin", f->path, "alice", NULL);
	snprintf(msg, sizeof(msg), "longer than %d bytes", CREDENTIALS_MAX_PASSWORD);
	expect_status(&r, 1, msg);
	run_tool(&r, "pw\npw\n", 0, f->path, "alice", NULL);
	expect_status(&r, 1, "use --stdin");

	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "bob:" H6 "\n");
	expect_dir_holds(f->dir, "users", NULL);
}

/* Failures after the temporary file exists must remove it and leave the
 * original alone. */
static void test_no_leftovers(void **state)
{
	struct fixture *f = *state;
	char path[192], text[1024];
	struct run r;

	snprintf(path, sizeof(path), "%s/nodir/users", f->dir);
	run_tool(&r, "pw\n", 0, "-c", "--stdin", path, "alice", NULL);
	expect_status(&r, 1, "nodir");
	expect_dir_holds(f->dir, NULL);

	/* Writing the new file fails (EFBIG) half-way. */
	file_put(f->path, "bob:" H6 "\n", 0600);
	run_tool(&r, "pw\n", RUN_FSIZE_LIMIT, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 1, "cannot write");
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "bob:" H6 "\n");
	expect_dir_holds(f->dir, "users", NULL);

	unlink(f->path);
	run_tool(&r, "pw\n", RUN_FSIZE_LIMIT, "-c", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 1, "cannot write");
	expect_dir_holds(f->dir, NULL);
}

/* A symlinked file is edited where it points; the link stays a link. */
static void test_symlink(void **state)
{
	struct fixture *f = *state;
	char target[192], text[1024];
	struct stat st;
	struct run r;

	snprintf(target, sizeof(target), "%s/real", f->dir);
	file_put(target, "bob:" H6 "\n", 0600);
	assert_int_equal(symlink("real", f->path), 0);
	run_tool(&r, "pw\n", 0, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	file_get(target, text, sizeof(text));
	assert_int_equal(strncmp(text, "bob:" H6 "\nalice:$y$", strlen("bob:" H6 "\nalice:")), 0);
	expect_dir_holds(f->dir, "users", "real", NULL);
}

/* A file with a plaintext password can be repaired with the tool; problems
 * on other lines are warnings, not failures. */
static void test_repair(void **state)
{
	struct fixture *f = *state;
	struct run r;

	file_put(f->path, "alice:oops-cleartext\nbob:also-cleartext\n", 0600);
	run_tool(&r, "pw\n", 0, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, ":2: user \"bob\"");
	assert_null(strstr(r.err, "cleartext"));
	run_tool(&r, "pw2\n", 0, "--stdin", f->path, "bob", NULL);
	expect_status(&r, 0, NULL);
	assert_null(strstr(r.err, "warning"));
	run_tool(&r, "pw\n", 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
}

static void test_usage(void **state)
{
	static const struct {
		const char *args[4];
		int status;
	} cases[] = {
		{{NULL}, 2},
		{{"-l", NULL}, 2},
		{{"onlyfile", NULL}, 2},
		{{"-D", "-l", "f", NULL}, 2},
		{{"-m", "md5", "f", "u"}, 2},
		{{"-c", "-D", "f", "u"}, 2},
		{{"--stdin", "-l", "f", NULL}, 2},
		{{"--bogus", "f", "u", NULL}, 2},
		{{"-h", NULL}, 0},
		{{"--help", NULL}, 0},
		{{"-V", NULL}, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run r;

		run_tool(&r, NULL, 0, cases[i].args[0], cases[i].args[1], cases[i].args[2],
			 cases[i].args[3], NULL);
		if (r.status != cases[i].status)
			fail_msg("case %zu: exit %d, expected %d", i, r.status, cases[i].status);
	}
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
	const struct CMUnitTest tests[] = {
		T(test_create_and_verify),
		T(test_methods),
		T(test_bcrypt_refuses_over_72_bytes),
		T(test_control_characters_refused),
		T(test_bcrypt_refuses_over_72_bytes_tty),
		T(test_bcrypt_long_password_verifies),
		T(test_long_passwords_other_methods),
		T(test_mixed_methods_warn),
		T(test_replace_keeps_rest),
		T(test_add_to_file_without_final_newline),
		T(test_delete),
		T(test_list),
		T(test_refusals),
		T(test_no_leftovers),
		T(test_symlink),
		T(test_repair),
		cmocka_unit_test(test_usage),
	};
#undef T

	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
