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
	RUN_TTY_STDOUT = 1 << 1,  /* run_tool_tty: stdout is the terminal too */
};

/* Room for a QR code drawn with three-byte characters. */
#define RUN_BUF 32768

struct run {
	int status; /* exit status, or 128 + signal */
	char out[RUN_BUF];
	char err[RUN_BUF];
	char tty[RUN_BUF]; /* what the tool wrote to its terminal (run_tool_tty) */
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

/* Runs argv with input on stdin (NULL for none, i.e. an empty pipe). */
static void run_argv(struct run *r, char *const argv[], const char *input, unsigned flags)
{
	int in[2], out[2], err[2], ws;
	long long deadline = now_ms() + TIMEOUT_MS;
	pid_t pid;

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
		fail_msg("%s did not finish within %d ms", argv[0], TIMEOUT_MS);
	}
	close(out[0]);
	close(err[0]);
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* Runs the tool with the given arguments (NULL-terminated) and input on stdin
 * (NULL for none, i.e. an empty pipe); under SOCKGATE_TEST_WRAPPER if set, whose
 * verdict on the tool's memory fails the test. */
static void run_tool(struct run *r, const char *input, unsigned flags, ...)
{
	const char *const *wrapper = harness_wrapper();
	char *argv[96];
	int argc = 0;
	va_list ap;

	while (wrapper != NULL && wrapper[argc] != NULL) {
		argv[argc] = (char *)wrapper[argc];
		assert_true(++argc < 80);
	}
	argv[argc++] = (char *)TOOL;
	va_start(ap, flags);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		assert_true(++argc < 95);
	va_end(ap);
	run_argv(r, argv, input, flags);
	if (harness_wrapper_failed(r->status))
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
 * prompts on /dev/tty, as for a person), stdin from /dev/null and, with
 * RUN_TTY_STDOUT in flags, stdout on the terminal as well. For each step,
 * waits until the terminal shows the step's prompt, then types its line; after
 * the last, any further prompt fails the test at once rather than leaving the
 * tool waiting. Arguments as for run_tool(). */
static void run_tool_tty(struct run *r, unsigned flags, const struct tty_step *steps, size_t nsteps,
			 ...)
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
		if (tty < 0 || in < 0 || dup2(in, 0) < 0 ||
		    dup2((flags & RUN_TTY_STDOUT) ? tty : out[1], 1) < 0 || dup2(err[1], 2) < 0)
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
	/* The tool is done with the terminal; what it wrote may still be on the
	 * way. With the last slave closed, the master reads all of it, then EIO. */
	close(slave);
	while (fds[0] >= 0) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		long long left = deadline - now_ms();

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			fail_msg("the terminal did not reach its end within %d ms", TIMEOUT_MS);
		if (take(fds[0], r->tty, sizeof(r->tty)) < 0) {
			close(fds[0]);
			fds[0] = -1;
		}
	}
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
	run_tool_tty(&r, 0, steps, 2, "-m", "bcrypt", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, pw, 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);

	snapshot_take(f->path, &before);
	password_line(pw, 73, 'A');
	/* One step: a second prompt fails the test at once. */
	run_tool_tty(&r, 0, steps, 1, "-m", "bcrypt", f->path, "alice", NULL);
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

/* ---- account attributes: fields, locks and TOTP secrets ------------------ */

/* A secret in the shape the tool writes it, and the same in lower case with
 * padding, as an app or another system may hand it over. */
#define SECRET    "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
#define SECRET_LC "jbswy3dpehpk3pxpjbswy3dpehpk3pxp===="

/* The secret=... parameter of the otpauth:// URI in text. */
static void uri_secret(const char *text, char *secret, size_t size)
{
	const char *p = strstr(text, "?secret=");
	size_t n;

	if (p == NULL)
		fail_msg("no otpauth URI with a secret in: %s", text);
	p += strlen("?secret=");
	n = strcspn(p, "&");
	assert_true(n >= 16 && n < size);
	memcpy(secret, p, n);
	secret[n] = '\0';
}

/* The code oathtool computes now for secret (then its options: --totp[=MODE]
 * and others, NULL-ended). */
static void oathtool_code(const char *secret, char *code, size_t size, ...)
{
	static const char oathtool[] = "/usr/bin/oathtool";
	char *argv[12];
	const char *opt;
	struct run *r = calloc(1, sizeof(*r));
	int argc = 0;
	va_list ap;

	assert_non_null(r);
	argv[argc++] = (char *)oathtool;
	va_start(ap, size);
	while ((opt = va_arg(ap, const char *)) != NULL && argc < 9)
		argv[argc++] = (char *)opt;
	va_end(ap);
	argv[argc++] = (char *)"-b";
	argv[argc++] = (char *)secret;
	argv[argc] = NULL;
	run_argv(r, argv, NULL, 0);
	if (r->status != 0)
		fail_msg("oathtool: exit %d: %s", r->status, r->err);
	assert_true(strlen(r->out) > 6 && strlen(r->out) < size);
	strcpy(code, r->out);
	code[strcspn(code, "\n")] = '\0';
	free(r);
}

/* Whether the core, reading the file as the tool left it, accepts user's
 * password with code. */
static enum credentials_result login_check(const char *path, const char *user, const char *password,
					   const char *code)
{
	struct credentials_request req = {
		.user = user, .password = password, .code = code, .totp_window = 1};
	struct credentials_verdict v;
	struct credentials *c;
	struct errbuf err;
	char text[4096];
	size_t len = file_get(path, text, sizeof(text));

	c = credentials_parse(path, text, len, &err);
	if (c == NULL)
		fail_msg("the core refuses %s: %s", path, err.msg);
	req.now = time(NULL);
	credentials_check(c, &req, &v);
	credentials_unref(c);
	return v.result;
}

static void skip_without_oathtool(void)
{
	if (access("/usr/bin/oathtool", X_OK) != 0)
		test_skip("no /usr/bin/oathtool (Debian package oathtool)");
}

/* Setting a password keeps every field of the entry and its lock: a locked
 * account stays locked until -U, and the other lines stay byte for byte. */
static void test_password_change_keeps_fields(void **state)
{
	static const char fields[] =
		":expires=2027-01-31:groups=ops,dev:totp=" SECRET ":totp_digits=8\r\n";
	struct fixture *f = *state;
	char text[4096], msg[256];
	const char *hash_end;
	struct run r;

	snprintf(text, sizeof(text), "# users\nalice:!" H6 "%sbob:" H5 "\n", fields);
	file_put(f->path, text, 0600);
	run_tool(&r, "new pw\n", 0, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, "alice stays locked; -U unlocks");
	snprintf(msg, sizeof(msg), "Updated password for alice in %s\n", f->path);
	assert_string_equal(r.out, msg);

	file_get(f->path, text, sizeof(text));
	assert_int_equal(strncmp(text, "# users\nalice:!$y$", 18), 0);
	hash_end = strchr(text + 18, ':');
	assert_non_null(hash_end);
	assert_int_equal(strncmp(hash_end, fields, strlen(fields)), 0);
	assert_string_equal(hash_end + strlen(fields), "bob:" H5 "\n");
	/* The new password is hers; the account is still locked. */
	assert_int_equal(login_check(f->path, "alice", "new pw", NULL), CREDENTIALS_DENIED);
	run_tool(&r, "new pw\n", 0, "-v", "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, "alice is locked (-U unlocks the account)");
	run_tool(&r, NULL, 0, "-U", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_int_equal(login_check(f->path, "alice", "new pw", NULL), CREDENTIALS_OK);
	expect_dir_holds(f->dir, "users", NULL);
}

/* A password set over a broken field (a plaintext password with a ':') drops
 * what cannot be a field, and says so without quoting it. */
static void test_password_repairs_broken_entry(void **state)
{
	struct fixture *f = *state;
	char text[1024];
	struct run r;

	file_put(f->path, "alice:s3cr:3tZ:groups=ops\n", 0600);
	run_tool(&r, "pw\n", 0, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, "dropped 1 part after alice's old password field");
	assert_null(strstr(r.err, "s3cr"));
	assert_null(strstr(r.err, "3tZ"));
	file_get(f->path, text, sizeof(text));
	assert_int_equal(strncmp(text, "alice:$y$", 9), 0);
	assert_non_null(strstr(text, ":groups=ops\n"));
	assert_null(strstr(text, "3tZ"));
	assert_int_equal(login_check(f->path, "alice", "pw", NULL), CREDENTIALS_OK);
}

/* --totp: a new secret, stored with the user, shown as an otpauth URI on
 * stdout and nowhere else; oathtool's code from the URI's secret logs in. */
static void test_totp_enrol(void **state)
{
	struct fixture *f = *state;
	char text[4096], secret[128], secret2[128], code[32], field[256], expect[512];
	struct run r;

	skip_without_oathtool();
	file_put(f->path, "bob:" H6 "\n", 0600);
	run_tool(&r, "pw\n", 0, "--stdin", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	run_tool(&r, NULL, 0, "--totp", f->path, "alice", NULL);
	expect_status(&r, 0, "Added a TOTP secret for alice in ");
	uri_secret(r.out, secret, sizeof(secret));
	/* 20 random bytes are 32 base32 characters, without padding. */
	assert_int_equal(strlen(secret), 32);
	assert_int_equal(strspn(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), 32);
	snprintf(expect, sizeof(expect),
		 "otpauth://totp/sockgate:alice?secret=%s&issuer=sockgate&algorithm=SHA1"
		 "&digits=6&period=30\n",
		 secret);
	/* The URI alone: stdout is a pipe, so no QR code. */
	assert_string_equal(r.out, expect);
	assert_null(strstr(r.err, secret));
	file_get(f->path, text, sizeof(text));
	snprintf(field, sizeof(field), ":totp=%s\n", secret);
	assert_non_null(strstr(text, field));
	assert_int_equal(strncmp(text, "bob:" H6 "\n", strlen("bob:" H6 "\n")), 0);

	oathtool_code(secret, code, sizeof(code), "--totp", NULL);
	assert_int_equal(strlen(code), 6);
	assert_int_equal(login_check(f->path, "alice", "pw", code), CREDENTIALS_OK);
	assert_int_equal(login_check(f->path, "alice", "wrong", code), CREDENTIALS_DENIED);

	/* Again, with other parameters: a new secret replaces the old one. */
	run_tool(&r, NULL, 0, "--totp", "--totp-algorithm", "sha256", "--totp-digits", "8",
		 "--totp-period", "60", "--issuer", "Acme Corp", f->path, "alice", NULL);
	expect_status(&r, 0, "Replaced alice's TOTP secret in ");
	uri_secret(r.out, secret2, sizeof(secret2));
	assert_string_not_equal(secret, secret2);
	snprintf(expect, sizeof(expect),
		 "otpauth://totp/Acme%%20Corp:alice?secret=%s&issuer=Acme%%20Corp"
		 "&algorithm=SHA256&digits=8&period=60\n",
		 secret2);
	assert_string_equal(r.out, expect);
	assert_null(strstr(r.err, secret2));
	file_get(f->path, text, sizeof(text));
	snprintf(field, sizeof(field), ":totp=%s:totp_alg=SHA256:totp_digits=8:totp_period=60\n",
		 secret2);
	assert_non_null(strstr(text, field));
	assert_null(strstr(text, secret));
	oathtool_code(secret2, code, sizeof(code), "--totp=sha256", "--digits=8",
		      "--time-step-size=60s", NULL);
	assert_int_equal(strlen(code), 8);
	assert_int_equal(login_check(f->path, "alice", "pw", code), CREDENTIALS_OK);
	expect_dir_holds(f->dir, "users", NULL);
}

/* A user added with a password and a secret in one run (--stdin). */
static void test_totp_with_new_user(void **state)
{
	struct fixture *f = *state;
	char secret[128], code[32];
	struct stat st;
	struct run r;

	skip_without_oathtool();
	run_tool(&r, "pw\n", 0, "-c", "--stdin", "--totp", "--groups", "ops", f->path, "carol",
		 NULL);
	expect_status(&r, 0, "Added password for carol in ");
	assert_non_null(strstr(r.err, "Added a TOTP secret for carol"));
	/* Messages go to stderr: stdout is the URI's alone. */
	assert_int_equal(strncmp(r.out, "otpauth://totp/sockgate:carol?secret=", 37), 0);
	assert_ptr_equal(strchr(r.out, '\n'), r.out + strlen(r.out) - 1);
	uri_secret(r.out, secret, sizeof(secret));
	assert_null(strstr(r.err, secret));
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	oathtool_code(secret, code, sizeof(code), "--totp", NULL);
	assert_int_equal(login_check(f->path, "carol", "pw", code), CREDENTIALS_OK);
}

/* --totp-secret imports a secret, normalised; the secret shows in the URI
 * only, never on stderr, not even when it is refused. */
static void test_totp_secret_import(void **state)
{
	struct fixture *f = *state;
	char text[2048], code[32];
	struct snapshot before;
	struct run r;

	skip_without_oathtool();
	file_put(f->path, "alice:" H6 "\n", 0600);
	run_tool(&r, NULL, 0, "--totp-secret", SECRET_LC, f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "alice:" H6 ":totp=" SECRET "\n");
	assert_non_null(strstr(r.out, "?secret=" SECRET "&"));
	assert_null(strstr(r.err, SECRET));
	assert_null(strstr(r.err, SECRET_LC));
	oathtool_code(SECRET, code, sizeof(code), "--totp", NULL);
	assert_int_equal(login_check(f->path, "alice", "Hello world!", code), CREDENTIALS_OK);

	/* Refusals leave the file alone and quote nothing of the secret. */
	snapshot_take(f->path, &before);
	run_tool(&r, NULL, 0, "--totp-secret", "NOT-BASE32-ZZ1", f->path, "alice", NULL);
	expect_status(&r, 2, "--totp-secret: the TOTP secret is not base32");
	assert_null(strstr(r.err, "NOT-BASE32"));
	run_tool(&r, NULL, 0, "--totp-secret", "JBSWY3DP", f->path, "alice", NULL);
	expect_status(&r, 2, "the TOTP secret has 5 bytes");
	assert_null(strstr(r.err, "JBSWY3DP"));
	run_tool(&r, NULL, 0, "--totp-secret", SECRET, f->path, "carol", NULL);
	expect_status(&r, 1, "no user carol (add the user with a password first)");
	assert_null(strstr(r.err, SECRET));
	assert_string_equal(r.out, "");
	run_tool(&r, NULL, 0, "--totp", f->path, "carol", NULL);
	expect_status(&r, 1, "no user carol");
	assert_string_equal(r.out, "");
	snapshot_expect_same(f->path, &before);
	expect_dir_holds(f->dir, "users", NULL);
}

/* A QR code when stdout is a terminal: half blocks with a light quiet zone,
 * the three finder patterns where a scanner looks for them. */
#define QR_MAX 256

struct qr_grid {
	int w, h;                   /* in modules, margin included */
	bool light[QR_MAX][QR_MAX]; /* [y][x] */
};

static void qr_parse(const char *text, struct qr_grid *g)
{
	memset(g, 0, sizeof(*g));
	while (*text != '\0') {
		size_t len = strcspn(text, "\n");
		const char *p = text, *end = text + len;
		bool top[QR_MAX], bottom[QR_MAX], cells = len > 0;
		int x = 0;

		if (end > text && end[-1] == '\r')
			end--;
		while (p < end && cells && x < QR_MAX) {
			if (*p == ' ') {
				top[x] = bottom[x] = false;
				p++;
			} else if (end - p >= 3 && memcmp(p, "\xe2\x96", 2) == 0 &&
				   (p[2] == '\x80' || p[2] == '\x84' || p[2] == '\x88')) {
				top[x] = p[2] != '\x84';
				bottom[x] = p[2] != '\x80';
				p += 3;
			} else {
				cells = false;
			}
			x++;
		}
		if (cells && p == end && x > 0) {
			if (g->w == 0)
				g->w = x;
			assert_int_equal(x, g->w);
			assert_true(g->h + 2 <= QR_MAX);
			memcpy(g->light[g->h++], top, sizeof(top));
			memcpy(g->light[g->h++], bottom, sizeof(bottom));
		}
		text += len + (text[len] == '\n');
	}
}

static void qr_expect_finder(const struct qr_grid *g, int x0, int y0)
{
	for (int dy = 0; dy < 7; dy++) {
		for (int dx = 0; dx < 7; dx++) {
			bool dark = dx == 0 || dx == 6 || dy == 0 || dy == 6 ||
				    (dx >= 2 && dx <= 4 && dy >= 2 && dy <= 4);

			if (g->light[y0 + dy][x0 + dx] == dark)
				fail_msg("module (%d,%d) of the finder at (%d,%d) is %s", dx, dy,
					 x0, y0, dark ? "light" : "dark");
		}
	}
}

static void test_totp_qr_on_terminal(void **state)
{
	struct fixture *f = *state;
	struct qr_grid *g = calloc(1, sizeof(*g));
	char secret[128];
	struct run r;
	int n;

	assert_non_null(g);
	file_put(f->path, "alice:" H6 "\n", 0600);
	run_tool_tty(&r, RUN_TTY_STDOUT, NULL, 0, "--totp", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "");
	uri_secret(r.tty, secret, sizeof(secret));
	assert_null(strstr(r.err, secret));
	assert_non_null(strstr(r.tty, "\xe2\x96\x80")); /* ▀ */
	assert_non_null(strstr(r.tty, "\xe2\x96\x84")); /* ▄ */
	assert_non_null(strstr(r.tty, "\xe2\x96\x88")); /* █ */

	qr_parse(r.tty, g);
	/* Square, QR_QUIET (4) light modules each side, a version's width. */
	n = g->w - 8;
	assert_true(n >= 21 && (n - 21) % 4 == 0);
	assert_int_equal(g->h, g->w + 1); /* rows in pairs: the last half is background */
	for (int i = 0; i < g->w; i++) {
		for (int m = 0; m < 4; m++) {
			assert_true(g->light[m][i] && g->light[g->w - 1 - m][i]);
			assert_true(g->light[i][m] && g->light[i][g->w - 1 - m]);
		}
	}
	qr_expect_finder(g, 4, 4);
	qr_expect_finder(g, 4 + n - 7, 4);
	qr_expect_finder(g, 4, 4 + n - 7);
	free(g);
}

/* --totp-remove drops the secret and its parameters, nothing else; a second
 * time is a note, and the file is not even rewritten. */
static void test_totp_remove(void **state)
{
	struct fixture *f = *state;
	char text[2048];
	struct snapshot before;
	struct run r;

	file_put(f->path,
		 "alice:" H6 ":totp_alg=SHA512:expires=2030-01-01:totp=" SECRET
		 ":totp_period=60\nbob:" H5 ":totp=" SECRET "\n",
		 0600);
	run_tool(&r, NULL, 0, "--totp-remove", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_non_null(strstr(r.out, "Removed alice's TOTP secret in "));
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "alice:" H6 ":expires=2030-01-01\nbob:" H5 ":totp=" SECRET "\n");
	snapshot_take(f->path, &before);
	run_tool(&r, NULL, 0, "--totp-remove", f->path, "alice", NULL);
	expect_status(&r, 0, "note: alice has no TOTP secret");
	snapshot_expect_same(f->path, &before);
}

/* -L puts shadow(5)'s '!' before the hash, -U takes it away; each is a note
 * the second time, with the file untouched. */
static void test_lock_unlock(void **state)
{
	static const char orig[] = "# x\nalice:" H6 ":groups=ops\r\nbob:" H5 "\n";
	struct fixture *f = *state;
	char text[2048];
	struct snapshot before;
	struct run r;

	file_put(f->path, orig, 0640);
	run_tool(&r, NULL, 0, "-L", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_non_null(strstr(r.out, "Locked alice in "));
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "# x\nalice:!" H6 ":groups=ops\r\nbob:" H5 "\n");
	assert_int_equal(login_check(f->path, "alice", "Hello world!", NULL), CREDENTIALS_DENIED);

	snapshot_take(f->path, &before);
	run_tool(&r, NULL, 0, "--lock", f->path, "alice", NULL);
	expect_status(&r, 0, "note: alice is locked already");
	assert_non_null(strstr(r.out, "No change to alice"));
	snapshot_expect_same(f->path, &before);

	run_tool(&r, NULL, 0, "-U", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_non_null(strstr(r.out, "Unlocked alice in "));
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, orig);
	assert_int_equal(login_check(f->path, "alice", "Hello world!", NULL), CREDENTIALS_OK);
	snapshot_take(f->path, &before);
	run_tool(&r, NULL, 0, "--unlock", f->path, "alice", NULL);
	expect_status(&r, 0, "note: alice is not locked");
	snapshot_expect_same(f->path, &before);
	assert_int_equal(before.st.st_mode & 07777, 0640);

	run_tool(&r, NULL, 0, "-L", f->path, "carol", NULL);
	expect_status(&r, 1, "no user carol");
	snapshot_expect_same(f->path, &before);
}

/* --expires and --groups set, replace in place and remove their fields, and
 * refuse values the parser would. */
static void test_expires_and_groups(void **state)
{
	static const char *const bad_dates[] = {"2027-02-30", "27-01-31",   "2027-1-31",
						"tomorrow",   "1969-12-31", ""};
	static const char *const bad_groups[] = {"ops,ops", "a b", "ops,", ",ops", "é"};
	struct fixture *f = *state;
	char text[2048];
	struct snapshot before;
	struct run r;

	file_put(f->path, "alice:" H6 ":totp=" SECRET "\nbob:" H6 "\n", 0600);
	run_tool(&r, NULL, 0, "--expires", "2027-01-31", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_non_null(strstr(r.out, "Set alice's expiry date to 2027-01-31 in "));
	run_tool(&r, NULL, 0, "--groups", "ops,dev", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "alice:" H6 ":totp=" SECRET
				  ":expires=2027-01-31:groups=ops,dev\nbob:" H6 "\n");

	/* Replaced where they stand. */
	run_tool(&r, NULL, 0, "--expires", "2028-02-29", "--groups", "admin", f->path, "alice",
		 NULL);
	expect_status(&r, 0, NULL);
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "alice:" H6 ":totp=" SECRET
				  ":expires=2028-02-29:groups=admin\nbob:" H6 "\n");

	snapshot_take(f->path, &before);
	for (size_t i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++) {
		run_tool(&r, NULL, 0, "--expires", bad_dates[i], f->path, "alice", NULL);
		expect_status(&r, 2, "--expires: ");
	}
	for (size_t i = 0; i < sizeof(bad_groups) / sizeof(bad_groups[0]); i++) {
		run_tool(&r, NULL, 0, "--groups", bad_groups[i], f->path, "alice", NULL);
		expect_status(&r, 2, "--groups: ");
	}
	run_tool(&r, NULL, 0, "--expires", "2027-01-31", f->path, "carol", NULL);
	expect_status(&r, 1, "no user carol");
	snapshot_expect_same(f->path, &before);

	/* A date that has come is written, with a note: a way to turn an
	 * account off on a known day, or now. */
	run_tool(&r, NULL, 0, "--expires", "2020-01-01", f->path, "bob", NULL);
	expect_status(&r, 0, "2020-01-01 has come: bob is refused from now on");
	assert_int_equal(login_check(f->path, "bob", "Hello world!", NULL), CREDENTIALS_DENIED);

	run_tool(&r, NULL, 0, "--expires", "never", "--groups", "", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_non_null(strstr(r.out, "Removed alice's expiry date in "));
	assert_non_null(strstr(r.out, "Removed alice's groups in "));
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text, "alice:" H6 ":totp=" SECRET "\nbob:" H6 ":expires=2020-01-01\n");
	snapshot_take(f->path, &before);
	run_tool(&r, NULL, 0, "--expires", "never", "--groups", "", f->path, "alice", NULL);
	expect_status(&r, 0, "note: alice has no expiry date");
	assert_non_null(strstr(r.err, "note: alice has no groups"));
	snapshot_expect_same(f->path, &before);
	expect_dir_holds(f->dir, "users", NULL);
}

/* Several changes in one run are one write; a change that would leave an
 * entry sockgate refuses is not made, and the message quotes nothing of it. */
static void test_changes_combined_and_checked(void **state)
{
	struct fixture *f = *state;
	char text[2048];
	struct snapshot before;
	struct run r;

	file_put(f->path, "alice:" H6 "\ndave:plaintext-pw\n", 0600);
	run_tool(&r, NULL, 0, "-L", "--expires", "2030-06-01", "--groups", "ops", f->path, "alice",
		 NULL);
	/* dave's line is another's problem: a warning, as for a password. */
	expect_status(&r, 0, "warning: ");
	file_get(f->path, text, sizeof(text));
	assert_string_equal(text,
			    "alice:!" H6 ":expires=2030-06-01:groups=ops\ndave:plaintext-pw\n");

	snapshot_take(f->path, &before);
	run_tool(&r, NULL, 0, "-L", f->path, "dave", NULL);
	expect_status(&r, 1, "sockgate refuses dave's entry as it stands");
	assert_null(strstr(r.err, "plaintext-pw"));
	snapshot_expect_same(f->path, &before);

	/* A password repairs it, and may come with changes (--stdin). */
	run_tool(&r, "pw\n", 0, "--stdin", "-m", "sha512", "-L", f->path, "dave", NULL);
	expect_status(&r, 0, NULL);
	assert_non_null(strstr(r.out, "Updated password for dave in "));
	assert_non_null(strstr(r.out, "Locked dave in "));
	assert_null(strstr(r.err, "sockgate will refuse"));
	file_get(f->path, text, sizeof(text));
	assert_non_null(strstr(text, "\ndave:!$6$"));
}

/* A secret in a file others can read is theirs too: the tool says so. */
static void test_totp_readable_file_warns(void **state)
{
	struct fixture *f = *state;
	struct run r;

	file_put(f->path, "alice:" H6 "\n", 0600);
	run_tool(&r, NULL, 0, "--totp", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_null(strstr(r.err, "readable"));
	assert_int_equal(chmod(f->path, 0640), 0);
	run_tool(&r, NULL, 0, "--totp", f->path, "alice", NULL);
	expect_status(&r, 0,
		      "is readable by group or others (mode 0640), and so is alice's "
		      "TOTP secret");
	/* Other changes keep quiet about it. */
	run_tool(&r, NULL, 0, "-L", f->path, "alice", NULL);
	expect_status(&r, 0, NULL);
	assert_null(strstr(r.err, "readable"));
}

/* -l: the name, then the state, tab-separated, in file order. */
static void test_list_state(void **state)
{
	struct fixture *f = *state;
	struct run r;

	file_put(f->path,
		 "# users\n"
		 "carol:" H6 "\n"
		 "alice:!" H6 ":groups=ops,dev:expires=2027-01-31:totp=" SECRET "\r\n"
		 "bob:" H5 ":totp=" SECRET ":totp_alg=SHA512:totp_digits=8:totp_period=60\n"
		 "dave:!" H5 "\n",
		 0600);
	run_tool(&r, NULL, 0, "-l", f->path, NULL);
	expect_status(&r, 0, NULL);
	assert_string_equal(r.out, "carol\n"
				   "alice\ttotp(SHA1,6,30)\tlocked\texpires=2027-01-31\t"
				   "groups=ops,dev\n"
				   "bob\ttotp(SHA512,8,60)\n"
				   "dave\tlocked\n");
	assert_null(strstr(r.out, SECRET));
	assert_string_equal(r.err, "");
}

/* Combinations that mean nothing are usage errors, and touch nothing. */
static void test_usage_changes(void **state)
{
	static const struct {
		const char *args[6];
		const char *why;
	} cases[] = {
		{{"-D", "-L", "F", "u"}, "do not combine with -D, -v or -l"},
		{{"-v", "--totp", "F", "u"}, "do not combine with -D, -v or -l"},
		{{"-l", "--groups", "ops", "F"}, "do not combine with -D, -v or -l"},
		{{"-L", "-U", "F", "u"}, "use only one of -L and -U"},
		{{"--totp", "--totp-remove", "F", "u"}, "use only one of"},
		{{"--totp-remove", "--totp-secret", SECRET, "F", "u"}, "use only one of"},
		{{"--totp-digits", "8", "F", "u"}, "only apply with --totp"},
		{{"--issuer", "x", "-L", "F", "u"}, "only apply with --totp"},
		{{"-m", "bcrypt", "-L", "F", "u"}, "-m applies to a new password"},
		{{"--totp", "--totp-digits", "9", "F", "u"}, "--totp-digits: 9 is not 6, 7 or 8"},
		{{"--totp", "--totp-period", "5", "F", "u"}, "--totp-period: 5 is not 10 to 300"},
		{{"--totp", "--totp-period", "30s", "F", "u"}, "--totp-period"},
		{{"--totp", "--totp-algorithm", "MD5", "F", "u"}, "--totp-algorithm"},
		{{"--totp", "--issuer", "a:b", "F", "u"}, "--issuer: "},
		{{"--totp", "--issuer", "", "F", "u"}, "--issuer: "},
		{{"--totp", "F", NULL}, "usage: "},
	};
	struct fixture *f = *state;
	struct snapshot before;

	file_put(f->path, "u:" H6 "\n", 0600);
	snapshot_take(f->path, &before);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[6];
		struct run r;

		for (size_t j = 0; j < 6; j++)
			args[j] = cases[i].args[j] != NULL && strcmp(cases[i].args[j], "F") == 0
					  ? f->path
					  : cases[i].args[j];
		run_tool(&r, NULL, 0, args[0], args[1], args[2], args[3], args[4], args[5], NULL);
		if (r.status != 2 || strstr(r.err, cases[i].why) == NULL)
			fail_msg("case %zu: exit %d, expected 2 and \"%s\"; stderr: %s", i,
				 r.status, cases[i].why, r.err);
		assert_string_equal(r.out, "");
		assert_null(strstr(r.err, SECRET));
	}
	snapshot_expect_same(f->path, &before);
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
		T(test_password_change_keeps_fields),
		T(test_password_repairs_broken_entry),
		T(test_totp_enrol),
		T(test_totp_with_new_user),
		T(test_totp_secret_import),
		T(test_totp_qr_on_terminal),
		T(test_totp_remove),
		T(test_lock_unlock),
		T(test_expires_and_groups),
		T(test_changes_combined_and_checked),
		T(test_totp_readable_file_warns),
		T(test_list_state),
		T(test_usage_changes),
		cmocka_unit_test(test_usage),
	};
#undef T

	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
