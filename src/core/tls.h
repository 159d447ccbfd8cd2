/* tls: TLS with OpenSSL 3, for the gateway's listeners and, optionally, its
 * upstreams. A tls_context is one SSL_CTX built from a gateway's settings; it
 * is reference-counted, so live sessions keep the one they started with while
 * a reload puts a renewed certificate in force for new handshakes. A TLS
 * transport (transport.h) wraps one connection: non-blocking, its handshake
 * driven by the session's events (tls_handshake()), its bytes moved by the same
 * calls as plain TCP, a half-close sent as close_notify. */
#ifndef SOCKGATE_TLS_H
#define SOCKGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errbuf.h"
#include "transport.h"

enum tls_verify {
	TLS_VERIFY_NONE = 0,
	TLS_VERIFY_OPTIONAL, /* a certificate the client sends must be valid */
	TLS_VERIFY_REQUIRED, /* the client must send a valid one */
};

/* A listener's side. Paths are files; key gets the credentials file's checks
 * (not writable by group or others, owned by root or key_owner). */
struct tls_server_settings {
	const char *certificate; /* PEM: the leaf first, then the chain */
	const char *key;         /* PEM */
	uid_t key_owner;
	bool tls13_only;          /* else TLS 1.2 and 1.3 */
	const char *ciphers;      /* TLS 1.2, OpenSSL's syntax */
	const char *ciphersuites; /* TLS 1.3; NULL: OpenSSL's */
	const char *client_ca;    /* NULL: no client certificates are asked for */
	enum tls_verify verify_client;
	bool tickets;                /* stateless resumption */
	uint64_t ticket_rotation_ms; /* a new ticket key this often */
	bool ktls;
};

/* The upstream side. */
struct tls_client_settings {
	const char *ca;                /* NULL: the system's trusted CAs */
	bool verify;                   /* the server's certificate and name */
	const char *certificate, *key; /* a client certificate, or NULL */
	uid_t key_owner;
	bool tls13_only;
	bool ktls;
};

struct tls_context;

struct tls_context *tls_server_context(const struct tls_server_settings *set, struct errbuf *err);
struct tls_context *tls_client_context(const struct tls_client_settings *set, struct errbuf *err);
struct tls_context *tls_context_ref(struct tls_context *ctx);
void tls_context_unref(struct tls_context *ctx);

/* The ticket keys of prev carry over into ctx (a reload), so clients resume
 * their sessions across it. */
void tls_context_keep_tickets(struct tls_context *ctx, const struct tls_context *prev);

/* The days until the server certificate expires (negative: it has), and its
 * subject, for sockgate -t. */
long tls_context_days_left(const struct tls_context *ctx);
void tls_context_subject(const struct tls_context *ctx, char *buf, size_t len);

/* Makes t a TLS transport over the connected, non-blocking socket fd (which it
 * takes over even on failure): as the server, or as the client of name (SNI,
 * and the name or address the certificate must show; NULL: no SNI and no name
 * check). The handshake follows with tls_handshake(). */
int transport_tls_server(struct transport *t, int fd, struct tls_context *ctx, struct errbuf *err);
int transport_tls_client(struct transport *t, int fd, struct tls_context *ctx, const char *name,
			 struct errbuf *err);

enum tls_progress {
	TLS_DONE = 0,
	TLS_WANT_READ,  /* call again once the socket is readable */
	TLS_WANT_WRITE, /* ... writable */
	TLS_FAILED,     /* why says why, for the log: "no shared cipher", ... */
};

/* Takes the handshake as far as the socket allows. A client that sent plain
 * text instead of a handshake fails with "plain text sent to a TLS port". */
enum tls_progress tls_handshake(struct transport *t, struct errbuf *why);

/* What a finished handshake agreed on, for logs and status. */
struct tls_info {
	char version[16];  /* "TLSv1.3" */
	char cipher[64];   /* "TLS_AES_256_GCM_SHA384" */
	char subject[256]; /* the peer's certificate subject, or "" */
	bool resumed;
	bool ktls_send, ktls_recv; /* the kernel encrypts / decrypts */
};

/* False if t is no TLS transport. */
bool tls_describe(const struct transport *t, struct tls_info *info);
bool transport_is_tls(const struct transport *t);

/* After a receive or send failed with EPROTO: OpenSSL's reason, such as
 * "decryption failed or bad record mac", or NULL (no TLS, or none known).
 * The string is static. */
const char *tls_error_reason(const struct transport *t);

#endif
