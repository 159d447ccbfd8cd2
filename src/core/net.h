/* net: address parsing, name resolution and socket set-up shared by the daemon
 * and the companion tools. No globals; every fallible call returns 0 / -1 (or a
 * descriptor / -1) and explains a failure in a struct errbuf. */
#ifndef SOCKGATE_NET_H
#define SOCKGATE_NET_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "errbuf.h"

/* Longest "[v6addr%scope]:65535" that net_format_addr writes, with the NUL. */
#define NET_ADDRSTRLEN 80
/* Longest host part accepted in an address specification. */
#define NET_HOSTLEN 256
#define NET_PORTLEN 6

enum net_resolve_flags {
	NET_RESOLVE_PASSIVE = 1 << 0, /* for bind(): "*" and "" mean any address */
	NET_RESOLVE_NUMERIC = 1 << 1, /* never ask DNS */
};

/* Splits "host:port", "[v6addr]:port" or "*:port" into host and port. The host
 * comes back without brackets ("*" stays "*"). Rejects a missing or non-numeric
 * port, ports outside 1..65535 (0 too unless allow_port_zero), unbracketed IPv6
 * addresses and trailing garbage. */
int net_split_hostport(const char *spec, int allow_port_zero, char host[NET_HOSTLEN],
		       char port[NET_PORTLEN], struct errbuf *err);

/* Parses a decimal port number 1..65535 (0 too if allow_zero). Returns the port
 * or -1 with err filled in. */
int net_parse_port(const char *s, int allow_zero, struct errbuf *err);

/* getaddrinfo for TCP. On success *out must be freed with freeaddrinfo().
 * AI_ADDRCONFIG applies to names only, never to a literal address. */
int net_resolve(const char *host, const char *port, int flags, struct addrinfo **out,
		struct errbuf *err);

/* A non-blocking, close-on-exec listening TCP socket bound to sa, with
 * SO_REUSEADDR and, for IPv6, IPV6_V6ONLY (so [::]:p and 0.0.0.0:p coexist).
 * On failure errno still holds the cause (EADDRINUSE, EAFNOSUPPORT, ...). */
int net_listen(const struct sockaddr *sa, socklen_t salen, int backlog, struct errbuf *err);

/* Starts a TCP connection. With nonblock the call returns at once and the
 * caller waits for writability, then calls net_connect_result(). On failure
 * errno still holds the cause. */
int net_connect(const struct sockaddr *sa, socklen_t salen, int nonblock, struct errbuf *err);

/* After a non-blocking connect became writable: 0 if connected, else -1 with the
 * socket error in errno. */
int net_connect_result(int fd);

/* Resolves host and port and connects (blocking) to the first address that
 * accepts. Returns the descriptor or -1. */
int net_dial(const char *host, const char *port, struct errbuf *err);

/* Whether fd is a listening TCP socket (IPv4 or IPv6), as one passed in by
 * systemd must be; if not, err says what it is instead. */
int net_check_tcp_listener(int fd, struct errbuf *err);
int net_set_nonblock(int fd, int on);
int net_set_nodelay(int fd);
/* Urgent (out-of-band) bytes arrive in the normal stream: a relay passes them on. */
int net_set_oobinline(int fd);

/* "192.0.2.1:80" or "[2001:db8::1]:80" into buf (NET_ADDRSTRLEN bytes). */
void net_format_addr(const struct sockaddr *sa, char *buf, size_t len);
/* The address only, without the port. */
void net_format_host(const struct sockaddr *sa, char *buf, size_t len);
/* The port of an AF_INET/AF_INET6 address, or 0. */
unsigned net_sockaddr_port(const struct sockaddr *sa);

/* The address a socket is bound to, formatted; "?" if it cannot be read. */
void net_format_local(int fd, char *buf, size_t len);

/* ---- addresses as sources (penalties, address lists, log limits) ---- */

/* An address range: "192.0.2.0/24", "2001:db8::/32", or one address. */
struct net_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned bits;
};

/* Parses "ADDRESS/BITS" or a bare numeric address (a host); an IPv4-mapped IPv6
 * range ("::ffff:192.0.2.0/120") is stored as the IPv4 range it stands for. */
int net_parse_cidr(const char *text, struct net_cidr *out, struct errbuf *err);

/* The family and 16 address bytes of sa, as a key that compares with memcmp()
 * (key[0] the family); IPv4-mapped IPv6 counts as IPv4, since a dual-stack socket
 * reports IPv4 clients so. False for other families. */
#define NET_ADDR_KEY_LEN 17
bool net_addr_key(const struct sockaddr *sa, uint8_t key[NET_ADDR_KEY_LEN]);
/* Keeps the first bits bits of a key's address (its family's length). */
void net_addr_key_mask(uint8_t key[NET_ADDR_KEY_LEN], unsigned bits);
/* Whether a key (net_addr_key()) lies in c. */
bool net_cidr_contains(const struct net_cidr *c, const uint8_t key[NET_ADDR_KEY_LEN]);

/* Whether sa lies in any of the n ranges. */
bool net_cidrs_contain(const struct net_cidr *list, size_t n, const struct sockaddr *sa);

/* Two socket addresses are the same address and port (IPv4 or IPv6). */
bool net_sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b);
/* The address is the wildcard (0.0.0.0 or ::). */
bool net_sockaddr_is_any(const struct sockaddr *sa);
/* The address is on the loopback (127.0.0.0/8, ::1, or IPv4-mapped 127/8). */
bool net_sockaddr_is_loopback(const struct sockaddr *sa);

/* write() until all of buf is written or an error other than EINTR occurs.
 * For blocking descriptors. Returns 0 or -1 with errno set. */
int net_write_all(int fd, const void *buf, size_t len);

#endif
