/* notify: sd_notify, socket activation and journal detection (see notify.h). */
#include "notify.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"

/* The notify socket, opened once. Our own sender rather than sd_notify(3):
 * libsystemd sends on a blocking socket, and a notify socket whose reader
 * stops reading (any harness that waited for READY=1 and went on) would stall
 * the main loop, and with it every accept, once its queue is full. */
static struct {
	bool checked;
	int fd;
	struct sockaddr_un addr;
	socklen_t addr_len;
} notify_sock = {.fd = -1};

/* A message that changes systemd's view of the service (READY, RELOADING,
 * STOPPING) waits this long for room; status updates and watchdog pings are
 * dropped at once, and their callers try again on their next tick. */
#define NOTIFY_WAIT_MS 1000

/* Whether there is a notify socket to talk to (opening it on first use; a
 * failure to create the socket is tried again next time). */
static bool notify_open(void)
{
	const char *e;
	size_t len;

	if (notify_sock.fd >= 0)
		return true;
	if (notify_sock.checked)
		return false;
	e = getenv("NOTIFY_SOCKET");
	len = e != NULL ? strlen(e) : 0;
	if (len < 2 || (e[0] != '/' && e[0] != '@') || len > sizeof(notify_sock.addr.sun_path)) {
		notify_sock.checked = true; /* none, or none we can use */
		return false;
	}
	notify_sock.addr.sun_family = AF_UNIX;
	memcpy(notify_sock.addr.sun_path, e, len);
	if (e[0] == '@')
		notify_sock.addr.sun_path[0] = '\0'; /* abstract namespace */
	notify_sock.addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	notify_sock.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	return notify_sock.fd >= 0;
}

/* Sends msg, with fds (n of them) attached if n > 0. Returns false only when
 * a message for systemd could not be sent. */
static bool notify_send_fds(const char *msg, bool important, const int *fds, size_t n)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * NOTIFY_MAX_FDS)];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int waited_ms = 0;

	if (!notify_open())
		return notify_sock.checked; /* true: no socket is set, nothing was due */
	mh.msg_name = &notify_sock.addr;
	mh.msg_namelen = notify_sock.addr_len;
	if (n > 0) {
		struct cmsghdr *c;

		if (n > NOTIFY_MAX_FDS)
			return false;
		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	for (;;) {
		if (sendmsg(notify_sock.fd, &mh, MSG_NOSIGNAL) >= 0)
			return true;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || !important || waited_ms >= NOTIFY_WAIT_MS)
			return false;
		(void)poll(NULL, 0, 10);
		waited_ms += 10;
	}
}

static bool notify_send(const char *msg, bool important)
{
	return notify_send_fds(msg, important, NULL, 0);
}

bool notify_fdstore_enabled(void)
{
	const char *e = getenv("FDSTORE");

	/* Opened here, on the main thread, before any worker sends. */
	return e != NULL && strtoul(e, NULL, 10) > 0 && notify_open();
}

bool notify_fdstore_add(const char *name, const int *fds, size_t n)
{
	char msg[NOTIFY_FDNAME_MAX + 32];

	/* FDPOLL=0: PID 1 keeps a socket whatever it reports. A half-closed
	 * session's socket shows a hang-up with bytes still queued in it, and
	 * would otherwise be dropped from the store before a restart. */
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
	return notify_send_fds(msg, true, fds, n);
}

bool notify_fdstore_remove(const char *name)
{
	char msg[NOTIFY_FDNAME_MAX + 32];

	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	return notify_send(msg, true);
}

void notify_ready(const char *status)
{
	char msg[512];

	if (status != NULL && *status != '\0')
		snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	else
		snprintf(msg, sizeof(msg), "READY=1");
	notify_send(msg, true);
}

void notify_reloading(void)
{
	struct timespec ts;
	char msg[128];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ULL +
			 (unsigned long long)ts.tv_nsec / 1000ULL);
	notify_send(msg, true);
}

void notify_stopping(void)
{
	notify_send("STOPPING=1\nSTATUS=stopping", true);
}

bool notify_status(const char *status)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "STATUS=%s", status);
	return notify_send(msg, false);
}

bool notify_watchdog(void)
{
	return notify_send("WATCHDOG=1", false);
}

uint64_t notify_watchdog_usec(void)
{
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec;
}

int notify_listen_fds(struct notify_fd **fds, struct errbuf *err)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	*fds = NULL;
	if (n < 0)
		return errbuf_errno(err, -n, "cannot read the sockets passed by systemd");
	if (n > 0 && names == NULL)
		return errbuf_set(err, "systemd passed sockets without names");
	if (n > 0 && (*fds = calloc((size_t)n, sizeof(**fds))) == NULL) {
		for (int i = 0; i < n; i++) {
			close(NOTIFY_LISTEN_FDS_START + i);
			free(names[i]);
		}
		free(names);
		return errbuf_set(err, "out of memory");
	}
	for (int i = 0; i < n; i++)
		(*fds)[i] = (struct notify_fd){.fd = NOTIFY_LISTEN_FDS_START + i, .name = names[i]};
	free(names);
	return n;
}

void notify_fds_free(struct notify_fd *fds, size_t n)
{
	for (size_t i = 0; fds != NULL && i < n; i++)
		free(fds[i].name);
	free(fds);
}

void notify_setup_logging(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return;
	if (fstat(STDERR_FILENO, &st) < 0)
		return;
	if ((unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
		log_use_journal(true);
}
