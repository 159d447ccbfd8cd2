/* net: address parsing, resolution and socket helpers (see net.h). */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int net_parse_port(const char *s, int allow_zero, struct errbuf *err)
{
	long v = 0;
	const char *p;

	if (*s == '\0')
		return errbuf_set(err, "missing port number");
	for (p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return errbuf_set(err, "port \"%.16s\" is not a number", s);
		v = v * 10 + (*p - '0');
		if (v > 65535)
			return errbuf_set(err, "port %.16s is out of range 1-65535", s);
	}
	if (v == 0 && !allow_zero)
		return errbuf_set(err, "port 0 is not allowed here");
	return (int)v;
}

int net_split_hostport(const char *spec, int allow_port_zero, char host[NET_HOSTLEN],
		       char port[NET_PORTLEN], struct errbuf *err)
{
	const char *h, *colon;
	size_t hlen;
	int pnum;

	if (spec == NULL || *spec == '\0')
		return errbuf_set(err, "empty address");
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (close == NULL)
			return errbuf_set(err, "\"%.64s\": missing ']'", spec);
		if (close[1] != ':')
			return errbuf_set(err, "\"%.64s\": expected ':PORT' after ']'", spec);
		h = spec + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
		if (hlen == 0)
			return errbuf_set(err, "\"%.64s\": empty IPv6 address", spec);
		if (memchr(h, ':', hlen) == NULL)
			return errbuf_set(err, "\"%.64s\": brackets hold an IPv6 address", spec);
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL)
			return errbuf_set(err, "\"%.64s\": expected HOST:PORT", spec);
		h = spec;
		hlen = (size_t)(colon - spec);
		if (memchr(h, ':', hlen) != NULL)
			return errbuf_set(
				err, "\"%.64s\": an IPv6 address needs brackets, as in [::1]:PORT",
				spec);
		if (hlen == 0)
			return errbuf_set(
				err, "\"%.64s\": missing host (use *:PORT for any address)", spec);
	}
	if (hlen >= NET_HOSTLEN)
		return errbuf_set(err, "\"%.64s...\": host name too long", spec);
	for (size_t i = 0; i < hlen; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c <= ' ' || c == 0x7f || c == '[' || c == ']' || c == '/')
			return errbuf_set(err, "\"%.64s\": invalid character in host", spec);
	}
	pnum = net_parse_port(colon + 1, allow_port_zero, err);
	if (pnum < 0) {
		char reason[ERRBUF_LEN];

		snprintf(reason, sizeof(reason), "%s", err != NULL ? err->msg : "");
		return errbuf_set(err, "\"%.64s\": %s", spec, reason);
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	/* pnum is 0..65535; the cast lets gcc see that five digits fit. */
	snprintf(port, NET_PORTLEN, "%u", (unsigned)(uint16_t)pnum);
	return 0;
}

static int is_numeric_host(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return host != NULL &&
	       (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1);
}

int net_resolve(const char *host, const char *port, int flags, struct addrinfo **out,
		struct errbuf *err)
{
	struct addrinfo hints;
	const char *node = host;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_NUMERICSERV;
	if (flags & NET_RESOLVE_PASSIVE) {
		hints.ai_flags |= AI_PASSIVE;
		if (node != NULL && (strcmp(node, "*") == 0 || *node == '\0'))
			node = NULL;
	} else if (!is_numeric_host(host)) {
		/* Not for a literal address: glibc drops every IPv6 answer, even "::1",
		 * on a host whose only IPv6 address is the loopback one. */
		hints.ai_flags |= AI_ADDRCONFIG;
	}
	if (flags & NET_RESOLVE_NUMERIC)
		hints.ai_flags |= AI_NUMERICHOST;
	if (host == NULL)
		host = "*";
	rc = getaddrinfo(node, port, &hints, out);
	if (rc == EAI_SYSTEM)
		return errbuf_errno(err, errno, "cannot resolve \"%.64s\"", host);
	if (rc != 0)
		return errbuf_set(err, "cannot resolve \"%.64s\": %s", host, gai_strerror(rc));
	return 0;
}

int net_listen(const struct sockaddr *sa, socklen_t salen, int backlog, struct errbuf *err)
{
	char name[NET_ADDRSTRLEN];
	int fd, e, one = 1;

	net_format_addr(sa, name, sizeof(name));
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		e = errno;
		errbuf_errno(err, e, "socket for %s", name);
		errno = e;
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (sa->sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, sa, salen) < 0) {
		e = errno;
		errbuf_errno(err, e, "cannot bind %s", name);
		close(fd);
		errno = e;
		return -1;
	}
	if (listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	e = errno;
	errbuf_errno(err, e, "cannot listen on %s", name);
	close(fd);
	errno = e;
	return -1;
}

/* Waits for a connect in progress on a blocking socket; returns 0 or the error. */
static int connect_wait(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};

	while (poll(&pfd, 1, -1) < 0) {
		if (errno != EINTR)
			return errno;
	}
	return net_connect_result(fd) == 0 ? 0 : errno;
}

int net_connect(const struct sockaddr *sa, socklen_t salen, int nonblock, struct errbuf *err)
{
	char name[NET_ADDRSTRLEN];
	int e, type = SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0);
	int fd = socket(sa->sa_family, type, IPPROTO_TCP);

	if (fd < 0) {
		e = errno;
		net_format_addr(sa, name, sizeof(name));
		errbuf_errno(err, e, "socket for %s", name);
		errno = e;
		return -1;
	}
	if (connect(fd, sa, salen) == 0)
		return fd;
	e = errno;
	if (nonblock && (e == EINPROGRESS || e == EINTR))
		return fd;
	/* An interrupted blocking connect goes on in the background; calling
	 * connect() again would only report EALREADY, so wait for the outcome. */
	if (e == EINTR)
		e = connect_wait(fd);
	if (e == 0)
		return fd;
	net_format_addr(sa, name, sizeof(name));
	close(fd);
	errbuf_errno(err, e, "cannot connect to %s", name);
	errno = e;
	return -1;
}

int net_connect_result(int fd)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -1;
	if (soerr != 0) {
		errno = soerr;
		return -1;
	}
	return 0;
}

int net_dial(const char *host, const char *port, struct errbuf *err)
{
	struct addrinfo *res, *ai;
	int fd = -1;

	if (net_resolve(host, port, 0, &res, err) < 0)
		return -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = net_connect(ai->ai_addr, ai->ai_addrlen, 0, err);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

int net_check_tcp_listener(int fd, struct errbuf *err)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type = 0, listening = 0;
	socklen_t ilen = sizeof(int);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return errbuf_errno(err, errno, "not a socket");
	/* Penalties, caps and logs are per client address: a unix socket has
	 * none, so every client would be one source, and none logged. */
	if (ss.ss_family == AF_UNIX)
		return errbuf_set(err, "a unix socket (AF_UNIX), but sockgate serves TCP only: "
				       "use ListenStream=ADDRESS:PORT");
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return errbuf_set(err, "a socket of address family %d, not IPv4 or IPv6",
				  ss.ss_family);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ilen) < 0 || type != SOCK_STREAM)
		return errbuf_set(err, "not a stream socket (ListenStream= is needed, not %s)",
				  type == SOCK_DGRAM ? "ListenDatagram=" : "another kind");
	ilen = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) < 0 || !listening)
		return errbuf_set(err, "not listening (Accept=yes is not supported)");
	return 0;
}

int net_set_nonblock(int fd, int on)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0)
		return -1;
	flags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, flags);
}

int net_set_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int net_set_oobinline(int fd)
{
	int one = 1;

	return setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one));
}

void net_format_host(const struct sockaddr *sa, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	switch (sa->sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, a,
			  sizeof(a));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, a,
			  sizeof(a));
		break;
	default:
		snprintf(a, sizeof(a), "?");
	}
	snprintf(buf, len, "%s", a);
}

unsigned net_sockaddr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	return 0;
}

void net_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	net_format_host(sa, a, sizeof(a));
	if (sa->sa_family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", a, net_sockaddr_port(sa));
	else if (sa->sa_family == AF_INET)
		snprintf(buf, len, "%s:%u", a, net_sockaddr_port(sa));
	else
		snprintf(buf, len, "?");
}

void net_format_local(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(buf, len, "?");
		return;
	}
	net_format_addr((struct sockaddr *)&ss, buf, len);
}

int net_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- addresses as sources ---- */

bool net_addr_key(const struct sockaddr *sa, uint8_t key[NET_ADDR_KEY_LEN])
{
	memset(key, 0, NET_ADDR_KEY_LEN);
	if (sa->sa_family == AF_INET) {
		key[0] = AF_INET;
		memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
			&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			key[0] = AF_INET;
			memcpy(key + 1, a->s6_addr + 12, 4);
		} else {
			key[0] = AF_INET6;
			memcpy(key + 1, a->s6_addr, 16);
		}
		return true;
	}
	return false;
}

static void net_mask_bytes(uint8_t *addr, unsigned len, unsigned bits)
{
	for (unsigned i = 0; i < len; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;

		addr[i] &= (uint8_t)(0xff00u >> keep);
	}
}

void net_addr_key_mask(uint8_t key[NET_ADDR_KEY_LEN], unsigned bits)
{
	net_mask_bytes(key + 1, key[0] == AF_INET ? 4 : 16, bits);
}

bool net_cidr_contains(const struct net_cidr *c, const uint8_t key[NET_ADDR_KEY_LEN])
{
	uint8_t a[16], b[16];
	unsigned len = c->family == AF_INET ? 4 : 16;

	if (c->family != key[0])
		return false;
	memcpy(a, key + 1, len);
	memcpy(b, c->addr, len);
	net_mask_bytes(a, len, c->bits);
	net_mask_bytes(b, len, c->bits);
	return memcmp(a, b, len) == 0;
}

int net_parse_cidr(const char *text, struct net_cidr *out, struct errbuf *err)
{
	char addr[64];
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned max;

	if (alen == 0 || alen >= sizeof(addr))
		return errbuf_set(err, "\"%.64s\" is not an address or ADDRESS/BITS", text);
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
		/* Clients at ::ffff:a.b.c.d are IPv4 sources: so is the block. */
		if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)out->addr)) {
			memmove(out->addr, out->addr + 12, 4);
			memset(out->addr + 4, 0, 12);
			out->family = AF_INET;
			max = 32;
		}
	} else {
		return errbuf_set(err, "\"%.64s\": \"%s\" is not a numeric IPv4 or IPv6 address",
				  text, addr);
	}
	out->bits = max;
	if (slash != NULL) {
		char *end;
		unsigned long bits = strtoul(slash + 1, &end, 10);

		if (out->family == AF_INET && max == 32 && strchr(addr, ':') != NULL) {
			/* A mapped block counts its bits in IPv6 terms. */
			if (slash[1] == '\0' || *end != '\0' || bits < 96 || bits > 128)
				return errbuf_set(
					err, "\"%.64s\": the prefix length must be 96..128", text);
			out->bits = (unsigned)bits - 96;
			return 0;
		}
		if (slash[1] == '\0' || *end != '\0' || bits > max)
			return errbuf_set(err, "\"%.64s\": the prefix length must be 0..%u", text,
					  max);
		out->bits = (unsigned)bits;
	}
	return 0;
}

bool net_sockaddr_is_any(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(
			&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
	return false;
}

bool net_sockaddr_is_loopback(const struct sockaddr *sa)
{
	uint8_t key[NET_ADDR_KEY_LEN];
	static const uint8_t v6_loopback[16] = {[15] = 1};

	if (!net_addr_key(sa, key))
		return false;
	if (key[0] == AF_INET)
		return key[1] == 127;
	return memcmp(key + 1, v6_loopback, 16) == 0;
}

bool net_sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;
	const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;

	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return a4->sin_port == b4->sin_port && a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port && a6->sin6_scope_id == b6->sin6_scope_id &&
		       memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) == 0;
	return false;
}

bool net_cidrs_contain(const struct net_cidr *list, size_t n, const struct sockaddr *sa)
{
	uint8_t key[NET_ADDR_KEY_LEN];

	if (n == 0 || !net_addr_key(sa, key))
		return false;
	for (size_t i = 0; i < n; i++)
		if (net_cidr_contains(&list[i], key))
			return true;
	return false;
}
