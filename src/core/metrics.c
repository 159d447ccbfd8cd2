/* metrics: GET /metrics over libmicrohttpd, one daemon (and so one internal
 * polling thread) per listening address, each with small limits, since it sits
 * in the gateway's process and nothing it does may cost the relay. */
#include "metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics {
	struct stats *st;
	size_t n;
	struct MHD_Daemon **daemons;
	unsigned *ports;
};

/* A fixed answer that ends the connection. */
static enum MHD_Result metrics_refuse(struct MHD_Connection *c, unsigned status, const char *body,
				      bool allow_get)
{
	struct MHD_Response *r;
	enum MHD_Result rc;
	bool ok;

	r = MHD_create_response_from_buffer_with_free_callback(strlen(body), (void *)body, NULL);
	if (r == NULL)
		return MHD_NO;
	ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				     "text/plain; charset=utf-8") == MHD_YES;
	ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
	if (allow_get)
		ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET") == MHD_YES;
	rc = ok ? MHD_queue_response(c, status, r) : MHD_NO;
	MHD_destroy_response(r);
	return rc;
}

static bool metrics_has_body(struct MHD_Connection *c)
{
	const char *length, *coding;

	length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	coding = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	return (length != NULL && strcmp(length, "0") != 0) || coding != NULL;
}

/* libmicrohttpd calls this once the headers are in, then once the request is
 * complete. A refusal is answered at the first call: libmicrohttpd then reads no
 * body and closes the connection after the answer. A scrape is answered at the
 * second, so that the connection may stay open for the next one. */
static enum MHD_Result metrics_handle(void *cls, struct MHD_Connection *c, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **req_cls)
{
	static int headers_seen;
	struct metrics *m = cls;
	struct MHD_Response *r;
	char *text;
	size_t len;
	enum MHD_Result rc;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
		return metrics_refuse(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Only GET is served.\n",
				      true);
	if (metrics_has_body(c) || *upload_data_size != 0)
		return metrics_refuse(c, MHD_HTTP_CONTENT_TOO_LARGE,
				      "A request must not have a body.\n", false);
	if (strcmp(url, "/metrics") != 0)
		return metrics_refuse(c, MHD_HTTP_NOT_FOUND, "Only /metrics is served.\n", false);
	if (*req_cls == NULL) {
		*req_cls = &headers_seen;
		return MHD_YES;
	}

	if (stats_render(m->st, &text, &len) != 0)
		return metrics_refuse(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory.\n", false);
	r = MHD_create_response_from_buffer_with_free_callback(len, text, free);
	if (r == NULL) {
		free(text);
		return MHD_NO;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE) !=
	    MHD_YES) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	rc = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return rc;
}

static struct MHD_Daemon *metrics_daemon(struct metrics *m, int fd)
{
	/* libmicrohttpd's epoll (MHD_USE_AUTO on Linux) in a thread of its own.
	 * STRICT_FOR_CLIENT: a malformed request gets 400 rather than a guess. */
	return MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL, metrics_handle, m,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)METRICS_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)METRICS_MAX_CONNECTIONS_PER_ADDRESS, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)METRICS_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)METRICS_CONNECTION_MEMORY, MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
		MHD_OPTION_END);
}

/* Binds addr and hands the socket to a new libmicrohttpd daemon, which owns it
 * from then on. */
static int metrics_listen(struct metrics *m, size_t i, const struct sockaddr *addr, socklen_t len,
			  struct errbuf *err)
{
	char text[NET_ADDRSTRLEN];
	struct sockaddr_storage bound;
	socklen_t bound_len = sizeof(bound);
	struct stat before, after;
	struct errbuf why;
	int fd;

	net_format_addr(addr, text, sizeof(text));
	fd = net_listen(addr, len, METRICS_MAX_CONNECTIONS, &why);
	if (fd < 0)
		return errbuf_set(err, "metrics: %s", why.msg);
	if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) != 0 ||
	    fstat(fd, &before) != 0) {
		errbuf_errno(err, errno, "metrics: cannot read the address of %s", text);
		close(fd);
		return -1;
	}
	m->ports[i] = net_sockaddr_port((struct sockaddr *)&bound);
	m->daemons[i] = metrics_daemon(m, fd);
	if (m->daemons[i] != NULL)
		return 0;
	/* libmicrohttpd 0.9.75 closes a given socket on some of its failure paths and
	 * not on others. A descriptor that still names our socket (the same inode:
	 * socket inode numbers are not reused) is ours to close; another one under
	 * the same number belongs to someone else by now. */
	if (fstat(fd, &after) == 0 && after.st_dev == before.st_dev &&
	    after.st_ino == before.st_ino)
		close(fd);
	return errbuf_set(err, "metrics: cannot start the HTTP listener on %s", text);
}

struct metrics *metrics_start(struct stats *st, const struct sockaddr *const *addrs,
			      const socklen_t *lens, size_t n, struct errbuf *err)
{
	struct metrics *m;
	sigset_t all, old;
	size_t i;
	int rc = 0;

	m = calloc(1, sizeof(*m));
	if (m == NULL || (n > 0 && ((m->daemons = calloc(n, sizeof(*m->daemons))) == NULL ||
				    (m->ports = calloc(n, sizeof(*m->ports))) == NULL))) {
		metrics_stop(m);
		errbuf_set(err, "metrics: out of memory");
		return NULL;
	}
	m->st = st;
	m->n = n;
	/* The daemons' threads inherit this mask: signals belong to the main
	 * thread's signalfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < n && rc == 0; i++)
		rc = metrics_listen(m, i, addrs[i], lens[i], err);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		metrics_stop(m);
		return NULL;
	}
	return m;
}

void metrics_stop(struct metrics *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n && m->daemons != NULL; i++)
		if (m->daemons[i] != NULL)
			MHD_stop_daemon(m->daemons[i]);
	free(m->daemons);
	free(m->ports);
	free(m);
}

unsigned metrics_port(const struct metrics *m, size_t i)
{
	return m != NULL && i < m->n ? m->ports[i] : 0;
}
