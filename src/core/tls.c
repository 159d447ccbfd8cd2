/* tls: contexts and the TLS transport, with OpenSSL 3 (see tls.h). */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "file.h"

/* Certificates, chains and keys are small: a larger file is no PEM of ours. */
#define TLS_MAX_PEM_FILE (1u << 20)
/* Ticket keys in force: the one that encrypts, and the ones before it, which
 * still decrypt (so a ticket lives two to three rotations). */
#define TLS_TICKET_KEYS      3
#define TLS_RECORD_HANDSHAKE 0x16

/* ---- ticket keys ---------------------------------------------------------- */

struct tls_ticket_key {
	unsigned char name[16];
	unsigned char aes[32];  /* AES-256-CBC, as OpenSSL's own tickets */
	unsigned char hmac[32]; /* HMAC-SHA256 */
};

/* Shared by the contexts of one gateway across reloads (tls_context_keep_tickets). */
struct tls_tickets {
	int refs;
	pthread_mutex_t lock;
	struct tls_ticket_key keys[TLS_TICKET_KEYS];
	unsigned n;
	uint64_t rotated_ms, rotation_ms;
};

struct tls_context {
	int refs;
	SSL_CTX *ctx;
	bool server;
	struct tls_tickets *tickets; /* servers with tickets only */
	long days_left;
	char subject[256];
};

/* One connection: the transport's state. */
struct tls_conn {
	SSL *ssl;
	bool server;
	bool peeked;           /* the first byte was seen to be a handshake */
	bool read_wants_write; /* SSL_read needs the socket writable */
	bool write_wants_read; /* SSL_write needs the socket readable */
	bool eof;              /* the end came behind bytes already returned */
	int error;             /* an errno that came behind bytes already returned */
	bool shut;             /* close_notify sent */
	const char *reason;    /* OpenSSL's words for the last EPROTO (static) */
};

static uint64_t tls_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int tls_new_key(struct tls_ticket_key *k)
{
	return RAND_bytes((unsigned char *)k, (int)sizeof(*k)) == 1 ? 0 : -1;
}

/* A new key encrypts from now on; the oldest is forgotten (lock held). */
static void tls_tickets_rotate(struct tls_tickets *tk, uint64_t now_ms)
{
	struct tls_ticket_key fresh;

	if (tls_new_key(&fresh) < 0)
		return; /* keep the old one a while longer */
	explicit_bzero(&tk->keys[TLS_TICKET_KEYS - 1], sizeof(tk->keys[0]));
	memmove(&tk->keys[1], &tk->keys[0], (TLS_TICKET_KEYS - 1) * sizeof(tk->keys[0]));
	tk->keys[0] = fresh;
	explicit_bzero(&fresh, sizeof(fresh));
	if (tk->n < TLS_TICKET_KEYS)
		tk->n++;
	tk->rotated_ms = now_ms;
}

static struct tls_tickets *tls_tickets_new(uint64_t rotation_ms)
{
	struct tls_tickets *tk = calloc(1, sizeof(*tk));

	if (tk == NULL)
		return NULL;
	tk->refs = 1;
	tk->rotation_ms = rotation_ms;
	pthread_mutex_init(&tk->lock, NULL);
	tls_tickets_rotate(tk, tls_clock_ms());
	if (tk->n == 0) {
		pthread_mutex_destroy(&tk->lock);
		free(tk);
		return NULL;
	}
	return tk;
}

static void tls_tickets_unref(struct tls_tickets *tk)
{
	if (tk == NULL || __atomic_sub_fetch(&tk->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	explicit_bzero(tk->keys, sizeof(tk->keys));
	pthread_mutex_destroy(&tk->lock);
	free(tk);
}

/* OpenSSL asks for the key to encrypt a new ticket (enc) or to decrypt one by
 * its name. Returns 1 (go on), 2 (decrypted with an old key: issue a new
 * ticket), 0 (unknown key: a full handshake), -1 (error). */
static int tls_ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
			 EVP_MAC_CTX *hctx, int enc)
{
	struct tls_context *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct tls_tickets *tk = c->tickets;
	static char digest[] = "SHA256"; /* OpenSSL's parameter wants it writable */
	struct tls_ticket_key key;
	OSSL_PARAM params[3];
	int rc = 0;
	uint64_t now = tls_clock_ms();

	pthread_mutex_lock(&tk->lock);
	if (now - tk->rotated_ms >= tk->rotation_ms)
		tls_tickets_rotate(tk, now);
	if (enc) {
		key = tk->keys[0];
		memcpy(name, key.name, sizeof(key.name));
		rc = 1;
	} else {
		for (unsigned i = 0; i < tk->n && rc == 0; i++) {
			if (memcmp(name, tk->keys[i].name, sizeof(key.name)) == 0) {
				key = tk->keys[i];
				rc = i == 0 ? 1 : 2;
			}
		}
	}
	pthread_mutex_unlock(&tk->lock);
	if (rc == 0)
		return 0;
	if (enc && RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
		rc = -1;
	else if ((enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key.aes, iv)
		      : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key.aes, iv)) != 1)
		rc = -1;
	if (rc > 0) {
		params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac,
							      sizeof(key.hmac));
		params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
		params[2] = OSSL_PARAM_construct_end();
		if (EVP_MAC_CTX_set_params(hctx, params) != 1)
			rc = -1;
	}
	explicit_bzero(&key, sizeof(key));
	return rc;
}

/* ---- contexts ------------------------------------------------------------- */

/* The reason of OpenSSL's last error, or fallback; clears the queue. */
static const char *tls_reason(const char *fallback)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r != NULL ? r : fallback;
}

/* Reads a PEM file whole (bounded), into a memory BIO. */
static BIO *tls_read_pem(const char *path, struct stat *st, struct errbuf *err)
{
	size_t len;
	char *text = file_read(path, TLS_MAX_PEM_FILE, st, &len, err);
	BIO *bio;

	if (text == NULL)
		return NULL;
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || BIO_write(bio, text, (int)len) != (int)len) {
		BIO_free(bio);
		bio = NULL;
		errbuf_set(err, "%s: out of memory", path);
	}
	file_free(text, len);
	return bio;
}

/* The leaf, then the chain, from certificate; then key, which must be theirs. */
static int tls_use_pair(struct tls_context *c, const char *certificate, const char *key,
			uid_t key_owner, struct errbuf *err)
{
	struct stat st;
	BIO *bio = tls_read_pem(certificate, &st, err);
	X509 *leaf = NULL, *extra;
	EVP_PKEY *pkey = NULL;
	int rc = -1;
	const ASN1_TIME *not_after;
	int days, secs;

	if (bio == NULL)
		return -1;
	leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
	if (leaf == NULL) {
		errbuf_set(err, "%s: no PEM certificate in it (%s)", certificate,
			   tls_reason("unreadable"));
		goto out;
	}
	if (SSL_CTX_use_certificate(c->ctx, leaf) != 1) {
		errbuf_set(err, "%s: the certificate cannot be used: %s", certificate,
			   tls_reason("refused"));
		goto out;
	}
	SSL_CTX_clear_chain_certs(c->ctx);
	while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(c->ctx, extra) != 1) {
			X509_free(extra);
			errbuf_set(err, "%s: a chain certificate cannot be used: %s", certificate,
				   tls_reason("refused"));
			goto out;
		}
	}
	ERR_clear_error(); /* the end of the file reads as an error */
	not_after = X509_get0_notAfter(leaf);
	if (ASN1_TIME_diff(&days, &secs, NULL, not_after) == 1)
		c->days_left = days;
	X509_NAME_oneline(X509_get_subject_name(leaf), c->subject, sizeof(c->subject));
	BIO_free(bio);
	bio = tls_read_pem(key, &st, err);
	if (bio == NULL)
		goto out;
	/* The credentials file's rules (sshd's StrictModes). */
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		errbuf_set(err,
			   "%s: group or others can write it (mode %04o); run chmod go-w on it",
			   key, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if (st.st_uid != 0 && st.st_uid != key_owner) {
		errbuf_set(err, "%s: owned by uid %u; expected root or uid %u", key,
			   (unsigned)st.st_uid, (unsigned)key_owner);
		goto out;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (pkey == NULL) {
		errbuf_set(err, "%s: no PEM private key in it, or one with a passphrase (%s)", key,
			   tls_reason("unreadable"));
		goto out;
	}
	if (SSL_CTX_use_PrivateKey(c->ctx, pkey) != 1 || SSL_CTX_check_private_key(c->ctx) != 1) {
		errbuf_set(err, "%s does not match the certificate %s (%s)", key, certificate,
			   tls_reason("mismatch"));
		goto out;
	}
	rc = 0;
out:
	EVP_PKEY_free(pkey);
	X509_free(leaf);
	BIO_free(bio);
	return rc;
}

static struct tls_context *tls_context_new(const SSL_METHOD *method, bool server, bool tls13_only,
					   bool ktls, struct errbuf *err)
{
	struct tls_context *c = calloc(1, sizeof(*c));
	uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
			/* A peer that closes without close_notify ends its stream like
			 * one that sends it: a relayed FIN is a half-close. */
			SSL_OP_IGNORE_UNEXPECTED_EOF;

	if (c == NULL || (c->ctx = SSL_CTX_new(method)) == NULL) {
		errbuf_set(err, "cannot set up TLS: %s", tls_reason("out of memory"));
		free(c);
		return NULL;
	}
	c->refs = 1;
	c->server = server;
	c->days_left = 100000;
	SSL_CTX_set_app_data(c->ctx, c);
	if (ktls)
		opts |= SSL_OP_ENABLE_KTLS;
	if (server)
		opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
	SSL_CTX_set_options(c->ctx, opts);
	/* An idle session holds no record buffers; writes may be partial and
	 * resume from a buffer that moved (the relay keeps the unwritten rest). */
	SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_min_proto_version(c->ctx, tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
	return c;
}

struct tls_context *tls_server_context(const struct tls_server_settings *set, struct errbuf *err)
{
	struct tls_context *c =
		tls_context_new(TLS_server_method(), true, set->tls13_only, set->ktls, err);

	if (c == NULL)
		return NULL;
	if (SSL_CTX_set_cipher_list(c->ctx, set->ciphers) != 1) {
		errbuf_set(err, "ciphers \"%.200s\": no cipher OpenSSL knows (%s)", set->ciphers,
			   tls_reason("none"));
		goto fail;
	}
	if (set->ciphersuites != NULL && SSL_CTX_set_ciphersuites(c->ctx, set->ciphersuites) != 1) {
		errbuf_set(err, "ciphersuites \"%.200s\": no TLS 1.3 suite OpenSSL knows (%s)",
			   set->ciphersuites, tls_reason("none"));
		goto fail;
	}
	if (tls_use_pair(c, set->certificate, set->key, set->key_owner, err) < 0)
		goto fail;
	if (set->client_ca != NULL) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(set->client_ca);

		if (names == NULL ||
		    SSL_CTX_load_verify_locations(c->ctx, set->client_ca, NULL) != 1) {
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			errbuf_set(err, "%s: no CA certificate for client certificates in it (%s)",
				   set->client_ca, tls_reason("unreadable"));
			goto fail;
		}
		SSL_CTX_set_client_CA_list(c->ctx, names);
	}
	if (set->verify_client != TLS_VERIFY_NONE)
		SSL_CTX_set_verify(c->ctx,
				   SSL_VERIFY_PEER | (set->verify_client == TLS_VERIFY_REQUIRED
							      ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
							      : 0),
				   NULL);
	/* Resumption is stateless (tickets): no cache to share across workers
	 * and restarts. The id context lets sessions with client certificates
	 * resume. */
	SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(c->ctx, (const unsigned char *)"sockgate", 8);
	if (set->tickets) {
		c->tickets = tls_tickets_new(set->ticket_rotation_ms);
		if (c->tickets == NULL) {
			errbuf_set(err, "cannot make TLS ticket keys");
			goto fail;
		}
		SSL_CTX_set_tlsext_ticket_key_evp_cb(c->ctx, tls_ticket_cb);
		SSL_CTX_set_timeout(c->ctx, (long)(2 * set->ticket_rotation_ms / 1000));
		SSL_CTX_set_num_tickets(c->ctx, 2);
	} else {
		SSL_CTX_set_options(c->ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(c->ctx, 0);
	}
	return c;
fail:
	tls_context_unref(c);
	return NULL;
}

struct tls_context *tls_client_context(const struct tls_client_settings *set, struct errbuf *err)
{
	struct tls_context *c =
		tls_context_new(TLS_client_method(), false, set->tls13_only, set->ktls, err);

	if (c == NULL)
		return NULL;
	if (set->verify) {
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
		if ((set->ca != NULL ? SSL_CTX_load_verify_locations(c->ctx, set->ca, NULL)
				     : SSL_CTX_set_default_verify_paths(c->ctx)) != 1) {
			errbuf_set(err, "%s: no CA certificate in it (%s)",
				   set->ca != NULL ? set->ca : "the system's CAs",
				   tls_reason("unreadable"));
			goto fail;
		}
	}
	if (set->certificate != NULL &&
	    tls_use_pair(c, set->certificate, set->key, set->key_owner, err) < 0)
		goto fail;
	return c;
fail:
	tls_context_unref(c);
	return NULL;
}

struct tls_context *tls_context_ref(struct tls_context *c)
{
	if (c != NULL)
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void tls_context_unref(struct tls_context *c)
{
	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	SSL_CTX_free(c->ctx);
	tls_tickets_unref(c->tickets);
	free(c);
}

void tls_context_keep_tickets(struct tls_context *c, const struct tls_context *prev)
{
	uint64_t rotation;

	if (c->tickets == NULL || prev == NULL || prev->tickets == NULL ||
	    prev->tickets == c->tickets)
		return;
	rotation = c->tickets->rotation_ms;
	tls_tickets_unref(c->tickets);
	c->tickets = prev->tickets;
	__atomic_add_fetch(&c->tickets->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&c->tickets->lock);
	c->tickets->rotation_ms = rotation; /* the new configuration's */
	pthread_mutex_unlock(&c->tickets->lock);
}

long tls_context_days_left(const struct tls_context *c)
{
	return c->days_left;
}

void tls_context_subject(const struct tls_context *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s", c->subject);
}

/* ---- the transport -------------------------------------------------------- */

static struct tls_conn *tls_conn_of(const struct transport *t)
{
	return t->state;
}

/* What an SSL call's failure means as an errno for the transport's caller;
 * sets the want flags. 0 means the end of the stream. */
static int tls_errno(struct tls_conn *c, int ret, bool reading)
{
	int e = SSL_get_error(c->ssl, ret), saved = errno;

	switch (e) {
	case SSL_ERROR_WANT_READ:
		if (!reading)
			c->write_wants_read = true;
		return EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		if (reading)
			c->read_wants_write = true;
		return EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		return saved != 0 ? saved : reading ? 0 : EPIPE;
	default:
		/* A bad record, a failed MAC, a fatal alert: the peer is no TLS
		 * peer now. Its words stay for the log. */
		c->reason = ERR_peek_last_error() != 0
				    ? ERR_reason_error_string(ERR_peek_last_error())
				    : NULL;
		ERR_clear_error();
		return EPROTO;
	}
}

/* Fills buf with as many records as have arrived: a short read then means the
 * socket said EAGAIN, as it does for plain TCP (relay.c skips the next read). */
static ssize_t tls_recv(struct transport *t, void *buf, size_t len)
{
	struct tls_conn *c = tls_conn_of(t);
	size_t total = 0;

	if (c->eof && total == 0)
		return 0;
	if (c->error != 0) {
		errno = c->error;
		return -1;
	}
	c->read_wants_write = false;
	while (total < len) {
		size_t n = 0;
		int r, e;

		ERR_clear_error();
		r = SSL_read_ex(c->ssl, (char *)buf + total, len - total, &n);
		if (r == 1) {
			total += n;
			continue;
		}
		e = tls_errno(c, r, true);
		if (e == EAGAIN)
			break;
		if (e == 0)
			c->eof = true;
		else if (total > 0)
			c->error = e;
		if (total > 0)
			break;
		if (e == 0)
			return 0;
		errno = e;
		return -1;
	}
	if (total == 0) {
		errno = EAGAIN;
		return -1;
	}
	return (ssize_t)total;
}

static ssize_t tls_send(struct transport *t, const void *buf, size_t len)
{
	struct tls_conn *c = tls_conn_of(t);
	size_t total = 0;

	c->write_wants_read = false;
	while (total < len) {
		size_t n = 0;
		int r, e;

		ERR_clear_error();
		r = SSL_write_ex(c->ssl, (const char *)buf + total, len - total, &n);
		if (r == 1) {
			total += n;
			continue;
		}
		e = tls_errno(c, r, false);
		if (total > 0)
			break;
		errno = e != 0 ? e : EPIPE;
		return -1;
	}
	return (ssize_t)total;
}

/* close_notify, then FIN: the peer sees the end of the stream either way, and
 * may still answer (TLS 1.3 keeps the other direction open; OpenSSL reads on
 * after its own close_notify). */
static int tls_shutdown(struct transport *t)
{
	struct tls_conn *c = tls_conn_of(t);
	int r;

	if (!c->shut) {
		ERR_clear_error();
		r = SSL_shutdown(c->ssl);
		if (r < 0) {
			int e = tls_errno(c, r, false);

			if (e == EAGAIN) {
				errno = EAGAIN;
				return -1;
			}
		}
		c->shut = true;
	}
	if (shutdown(t->fd, SHUT_WR) < 0 && errno != ENOTCONN)
		return -1;
	return 0;
}

static bool tls_pending(const struct transport *t)
{
	const struct tls_conn *c = tls_conn_of(t);

	return c->eof || c->error != 0 || SSL_has_pending(c->ssl);
}

static void tls_ready(struct transport *t, bool *readable, bool *writable)
{
	const struct tls_conn *c = tls_conn_of(t);

	if (c->read_wants_write && *writable)
		*readable = true;
	if (c->write_wants_read && *readable)
		*writable = true;
}

static void tls_close(struct transport *t)
{
	struct tls_conn *c = tls_conn_of(t);

	SSL_free(c->ssl);
	free(c);
	close(t->fd);
}

static const struct transport_ops tls_ops = {
	.name = "tls",
	.recv = tls_recv,
	.send = tls_send,
	.shutdown = tls_shutdown,
	.pending = tls_pending,
	.ready = tls_ready,
	.close = tls_close,
};

const char *tls_error_reason(const struct transport *t)
{
	return transport_is_tls(t) ? tls_conn_of(t)->reason : NULL;
}

bool transport_is_tls(const struct transport *t)
{
	return t->ops == &tls_ops;
}

static int tls_wrap(struct transport *t, int fd, struct tls_context *ctx, bool server,
		    struct errbuf *err)
{
	struct tls_conn *c = calloc(1, sizeof(*c));

	if (c != NULL)
		c->ssl = SSL_new(ctx->ctx);
	if (c == NULL || c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
		if (c != NULL)
			SSL_free(c->ssl);
		free(c);
		close(fd);
		return errbuf_set(err, "cannot set up TLS: %s", tls_reason("out of memory"));
	}
	c->server = server;
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	t->ops = &tls_ops;
	t->fd = fd;
	t->state = c;
	return 0;
}

int transport_tls_server(struct transport *t, int fd, struct tls_context *ctx, struct errbuf *err)
{
	return tls_wrap(t, fd, ctx, true, err);
}

int transport_tls_client(struct transport *t, int fd, struct tls_context *ctx, const char *name,
			 struct errbuf *err)
{
	struct tls_conn *c;
	unsigned char addr[16];
	bool literal;

	if (tls_wrap(t, fd, ctx, false, err) < 0)
		return -1;
	c = tls_conn_of(t);
	if (name == NULL)
		return 0;
	literal = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
	/* SNI names a host, never an address (RFC 6066); the check is for
	 * either. */
	if ((!literal && SSL_set_tlsext_host_name(c->ssl, name) != 1) ||
	    (SSL_CTX_get_verify_mode(ctx->ctx) != SSL_VERIFY_NONE &&
	     (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name)
		      : SSL_set1_host(c->ssl, name)) != 1)) {
		errbuf_set(err, "cannot use the name \"%.200s\" for TLS: %s", name,
			   tls_reason("refused"));
		transport_close(t);
		return -1;
	}
	SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return 0;
}

/* Why a handshake failed, in the words of the log. */
static void tls_failure(struct tls_conn *c, int ret, struct errbuf *why)
{
	int e = SSL_get_error(c->ssl, ret), saved = errno;
	unsigned long code = ERR_peek_last_error();
	long verify = SSL_get_verify_result(c->ssl);

	if (verify != X509_V_OK && SSL_get0_peer_certificate(c->ssl) != NULL)
		errbuf_set(why, "certificate verify failed: %s",
			   X509_verify_cert_error_string(verify));
	else if (e == SSL_ERROR_SYSCALL && code == 0)
		errbuf_set(why, "%s",
			   saved == 0 ? "the peer closed during the handshake" : strerror(saved));
	else if (e == SSL_ERROR_ZERO_RETURN)
		errbuf_set(why, "the peer closed during the handshake");
	else
		errbuf_set(why, "%s",
			   code != 0 && ERR_reason_error_string(code) != NULL
				   ? ERR_reason_error_string(code)
				   : "handshake failed");
	ERR_clear_error();
}

enum tls_progress tls_handshake(struct transport *t, struct errbuf *why)
{
	struct tls_conn *c = tls_conn_of(t);
	int r;

	/* A client that speaks plain text (telnet, nc) to a TLS port sends a
	 * line, not a handshake record: say so instead of "wrong version". */
	if (c->server && !c->peeked) {
		unsigned char first;
		ssize_t n = recv(t->fd, &first, 1, MSG_PEEK | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return TLS_WANT_READ;
		if (n < 0) {
			errbuf_set(why, "%s", strerror(errno));
			return TLS_FAILED;
		}
		if (n == 0) {
			errbuf_set(why, "the peer closed before the handshake");
			return TLS_FAILED;
		}
		if (first != TLS_RECORD_HANDSHAKE) {
			errbuf_set(why, "plain text sent to a TLS port");
			return TLS_FAILED;
		}
		c->peeked = true;
	}
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1)
		return TLS_DONE;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	default:
		tls_failure(c, r, why);
		return TLS_FAILED;
	}
}

bool tls_describe(const struct transport *t, struct tls_info *info)
{
	const struct tls_conn *c;
	X509 *peer;

	memset(info, 0, sizeof(*info));
	if (!transport_is_tls(t))
		return false;
	c = tls_conn_of(t);
	snprintf(info->version, sizeof(info->version), "%s", SSL_get_version(c->ssl));
	snprintf(info->cipher, sizeof(info->cipher), "%s", SSL_get_cipher_name(c->ssl));
	peer = SSL_get0_peer_certificate(c->ssl);
	if (peer != NULL)
		X509_NAME_oneline(X509_get_subject_name(peer), info->subject,
				  (int)sizeof(info->subject));
	info->resumed = SSL_session_reused(c->ssl) == 1;
	info->ktls_send = BIO_get_ktls_send(SSL_get_wbio(c->ssl)) == 1;
	info->ktls_recv = BIO_get_ktls_recv(SSL_get_rbio(c->ssl)) == 1;
	return true;
}
