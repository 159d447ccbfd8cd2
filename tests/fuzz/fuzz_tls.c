/* fuzz_tls: what a client can send a TLS listener before and during the
 * handshake. The input is written into one end of a socket pair as everything
 * the client says (then its end of the stream); the gateway's side runs the
 * server transport as the session drives it: tls_handshake() until it is done
 * or fails, then reads until the end. Nothing may crash or leak, a failure must
 * have a reason, and reads must keep their contract. The seeds are real client
 * hellos (TLS 1.3, 1.2, 1.1), plain text and a truncated record. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls.h"
#include "transport.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tls_context *ctx;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_tls: %s\n", what);
	abort();
}

/* A throwaway P-256 key and self-signed certificate, in files of a temporary
 * directory, for the listener's context. */
static void make_context(void)
{
	char dir[] = "/tmp/fuzz-tls.XXXXXX", crt[64], key[64];
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f;
	struct errbuf err;
	struct tls_server_settings set = {
		.certificate = crt,
		.key = key,
		.key_owner = getuid(),
		.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",
		.tickets = true,
		.ticket_rotation_ms = 3600000,
	};

	if (pkey == NULL || x == NULL || mkdtemp(dir) == NULL)
		die("cannot make a key");
	snprintf(crt, sizeof(crt), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pkey);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	if (X509_sign(x, pkey, EVP_sha256()) == 0)
		die("cannot sign");
	f = fopen(crt, "w");
	if (f == NULL || PEM_write_X509(f, x) != 1)
		die("cannot write the certificate");
	fclose(f);
	f = fopen(key, "w");
	if (f == NULL || PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) != 1)
		die("cannot write the key");
	fclose(f);
	chmod(key, 0600);
	ctx = tls_server_context(&set, &err);
	if (ctx == NULL) {
		fprintf(stderr, "fuzz_tls: %s\n", err.msg);
		abort();
	}
	unlink(crt);
	unlink(key);
	rmdir(dir);
	X509_free(x);
	EVP_PKEY_free(pkey);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	make_context();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct transport t;
	struct errbuf why;
	int sv[2];
	char buf[4096];

	/* A client's first flights fit the socket's buffer whole. */
	if (size > 65536)
		size = 65536;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
		die("write");
	shutdown(sv[1], SHUT_WR);
	if (transport_tls_server(&t, sv[0], ctx, &why) < 0)
		die(why.msg);
	for (int round = 0; round < 8; round++) {
		enum tls_progress p;

		why.msg[0] = '\0';
		p = tls_handshake(&t, &why);
		if (p == TLS_FAILED) {
			if (why.msg[0] == '\0')
				die("a failed handshake without a reason");
			break;
		}
		if (p != TLS_DONE)
			continue; /* the client has said all it will: this ends soon */
		for (int i = 0; i < 64; i++) {
			ssize_t n = transport_recv(&t, buf, sizeof(buf));

			if (n > (ssize_t)sizeof(buf))
				die("a read longer than its buffer");
			if (n <= 0)
				break;
		}
		break;
	}
	transport_close(&t);
	close(sv[1]);
	return 0;
}
