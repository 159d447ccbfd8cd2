/* checker: crypt(3) in child processes of the lowest priority (see checker.h). */
#include "checker.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* One request, always this size: the child learns nothing from its length. */
struct checker_request {
	char input[CRYPT_MAX_PASSPHRASE_SIZE];
	char setting[CRYPT_OUTPUT_SIZE];
};

/* A check slower than this is a hung child: the pool stops using it. */
#define CHECKER_TIMEOUT_S 120

struct checker {
	unsigned n;
	int *fd;   /* the daemon's end of each channel */
	pid_t *pid;
};

/* Lowest priority the kernel offers an unprivileged process: its own session
 * (so its own autogroup) at autogroup nice 19, and SCHED_IDLE inside it. Each
 * step may be refused (no autogroup, a sandbox): the checks then merely run at
 * a lower priority than they could. */
static void checker_lower_priority(void)
{
	struct sched_param sp = {.sched_priority = 0};
	int fd;

	(void)setsid();
	fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "19", 2);
		close(fd);
	}
	if (sched_setscheduler(0, SCHED_IDLE, &sp) != 0)
		(void)setpriority(PRIO_PROCESS, 0, 19);
}

/* Keeps the channel as descriptor 3 and closes everything else the daemon had
 * open (listeners, inherited sockets) but stdin, stdout and stderr. */
static void checker_close_others(int fd)
{
	if (fd != 3) {
		if (dup2(fd, 3) < 0)
			_exit(1);
	}
	if (close_range(4, ~0u, 0) != 0) {
		long max = sysconf(_SC_OPEN_MAX);

		for (long i = 4; i < (max > 0 ? max : 65536); i++)
			close((int)i);
	}
}

static void checker_serve(void)
{
	static struct checker_request req;
	static struct crypt_data data;

	for (;;) {
		ssize_t n = recv(3, &req, sizeof(req), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		memset(&data, 0, sizeof(data));
		if (n == (ssize_t)sizeof(req)) {
			req.input[sizeof(req.input) - 1] = '\0';
			req.setting[sizeof(req.setting) - 1] = '\0';
			if (crypt_r(req.input, req.setting, &data) == NULL)
				memcpy(data.output, "*0", 3);
		} else {
			memcpy(data.output, "*0", 3);
		}
		explicit_bzero(&req, sizeof(req));
		do
			n = send(3, data.output, sizeof(data.output), MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		explicit_bzero(&data, sizeof(data));
		if (n < 0)
			break;
	}
	_exit(0);
}

static void checker_child(int fd, pid_t parent)
{
	static const int ignored[] = {SIGHUP, SIGINT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2};
	sigset_t none;

	/* Dies with the daemon; if it is already gone, do not linger. A service
	 * stop signals every process: the daemon closes the channel when done. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
		signal(ignored[i], SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	checker_close_others(fd);
	(void)prctl(PR_SET_NAME, "sockgate-check");
	checker_lower_priority();
	checker_serve();
}

struct checker *checker_spawn(unsigned n, struct errbuf *err)
{
	struct checker *c = calloc(1, sizeof(*c));
	pid_t self = getpid();

	if (c == NULL || n == 0)
		goto nomem;
	c->fd = malloc(n * sizeof(*c->fd));
	c->pid = malloc(n * sizeof(*c->pid));
	if (c->fd == NULL || c->pid == NULL)
		goto nomem;
	for (; c->n < n; c->n++) {
		struct timeval tv = {.tv_sec = CHECKER_TIMEOUT_S};
		int sv[2];
		pid_t pid;

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
			errbuf_errno(err, errno, "password-check process: socketpair");
			goto fail;
		}
		pid = fork();
		if (pid < 0) {
			errbuf_errno(err, errno, "password-check process: fork");
			close(sv[0]);
			close(sv[1]);
			goto fail;
		}
		if (pid == 0) {
			close(sv[0]);
			checker_child(sv[1], self);
		}
		close(sv[1]);
		(void)setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		c->fd[c->n] = sv[0];
		c->pid[c->n] = pid;
	}
	return c;
nomem:
	errbuf_set(err, "out of memory");
fail:
	checker_free(c);
	return NULL;
}

/* A child that failed once is out of step with its channel: end it. */
static int checker_lost(struct checker *c, unsigned i, int e)
{
	shutdown(c->fd[i], SHUT_RDWR);
	kill(c->pid[i], SIGKILL);
	errno = e;
	return -1;
}

int checker_crypt(struct checker *c, unsigned i, const char *setting, struct crypt_data *data)
{
	struct checker_request req;
	size_t slen = strnlen(setting, sizeof(req.setting));
	ssize_t n;

	if (slen >= sizeof(req.setting)) {
		/* No method has settings this long: crypt's own failure token. */
		memcpy(data->output, "*0", 3);
		return 0;
	}
	memset(&req, 0, sizeof(req));
	memcpy(req.input, data->input, sizeof(req.input));
	req.input[sizeof(req.input) - 1] = '\0';
	memcpy(req.setting, setting, slen);
	do
		n = send(c->fd[i], &req, sizeof(req), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	explicit_bzero(&req, sizeof(req));
	if (n != (ssize_t)sizeof(req))
		return checker_lost(c, i, n < 0 ? errno : EPIPE);
	do
		n = recv(c->fd[i], data->output, sizeof(data->output), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(data->output))
		return checker_lost(c, i, n < 0 ? errno : EPIPE);
	data->output[sizeof(data->output) - 1] = '\0';
	return 0;
}

pid_t checker_pid(const struct checker *c, unsigned i)
{
	return c->pid[i];
}

void checker_free(struct checker *c)
{
	if (c == NULL)
		return;
	for (unsigned i = 0; i < c->n; i++)
		close(c->fd[i]);
	for (unsigned i = 0; i < c->n; i++) {
		while (waitpid(c->pid[i], NULL, 0) < 0 && errno == EINTR)
			;
	}
	free(c->fd);
	free(c->pid);
	free(c);
}
