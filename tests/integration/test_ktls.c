/* test_ktls: with kernel TLS, the gateway relays the upstream's bytes to a TLS
 * client by splice() into a socket the kernel encrypts, and says so in the log
 * (tls="... ktls=send splice" or "ktls=both splice"); every byte arrives. Needs
 * the kernel's tls module (the "tls" ULP in /proc/sys/net/ipv4/tcp_available_ulp):
 * without it the test reports itself skipped (exit 77), as on machines whose
 * kernel lacks CONFIG_TLS. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "client_checks.h"
#include "fixture.h"

#define PASSWORD "Ktls-Secret-5"
#define T        FIXTURE_TIMEOUT_MS

static const char *const users[] = {"alice", PASSWORD, NULL};

static bool kernel_has_tls(void)
{
	char ulp[256] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");

	if (f == NULL)
		return false;
	if (fgets(ulp, sizeof(ulp), f) == NULL)
		ulp[0] = '\0';
	fclose(f);
	return strstr(ulp, "tls") != NULL;
}

static void run_ok(const char *const argv[])
{
	struct harness_proc p;

	assert_int_equal(harness_spawn(&p, argv, NULL, HARNESS_STDIN_NULL | HARNESS_STDOUT_NULL),
			 0);
	assert_int_equal(harness_wait_exit(&p, T), 0);
	assert_int_equal(p.exit_code, 0);
	harness_cleanup(&p);
}

/* A megabyte through a TLS 1.2 AES-GCM session (OpenSSL 3.0 offloads both
 * directions of TLS 1.2, only sending for TLS 1.3): the log names the path. */
static void the_kernel_encrypts_and_the_relay_splices(void **state)
{
	static const char *const echo[] = {"--echo", NULL};
	struct fixture f;
	char crt[PATH_MAX + 16], key[PATH_MAX + 16], text[PATH_MAX * 2 + 256], port[16], line[1024];
	struct harness_proc p;
	static const char script[] =
		"import socket, ssl, sys\n"
		"ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n"
		"ctx.check_hostname = False\n"
		"ctx.verify_mode = ssl.CERT_NONE\n"
		"ctx.maximum_version = ssl.TLSVersion.TLSv1_2\n"
		"s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))))\n"
		"data = bytes(range(256)) * 4096\n"
		"s.sendall(b'alice\\n" PASSWORD "\\n' + data)\n"
		"got = b''\n"
		"while len(got.split(b'logged in.\\n', 1)[-1]) < len(data) or b'logged in.' not in "
		"got:\n"
		"    d = s.recv(65536)\n"
		"    if not d: break\n"
		"    got += d\n"
		"print('exact' if got.split(b'logged in.\\n', 1)[1] == data else 'differs')\n";
	const char *client[] = {"/usr/bin/python3", "-c", script, port, NULL};
	char buf[256];

	(void)state;
	if (!kernel_has_tls())
		test_skip("this kernel has no tls ULP (CONFIG_TLS): kTLS cannot be tested here");
	assert_int_equal(fixture_init(&f, users), 0);
	assert_int_equal(fixture_upstream(&f, echo), 0);
	snprintf(crt, sizeof(crt), "%s/cert.pem", f.dir);
	snprintf(key, sizeof(key), "%s/key.pem", f.dir);
	{
		const char *argv[] = {"/usr/bin/openssl",
				      "req",
				      "-x509",
				      "-newkey",
				      "ec",
				      "-pkeyopt",
				      "ec_paramgen_curve:P-256",
				      "-nodes",
				      "-keyout",
				      key,
				      "-out",
				      crt,
				      "-days",
				      "2",
				      "-subj",
				      "/CN=localhost",
				      NULL};

		run_ok(argv);
	}
	snprintf(text, sizeof(text),
		 "tls = { certificate = \"%s\"; key = \"%s\"; "
		 "ciphers = \"ECDHE-ECDSA-AES128-GCM-SHA256\"; };",
		 crt, key);
	assert_int_equal(fixture_config(&f, NULL, text), 0);
	assert_int_equal(fixture_start(&f), 0);
	snprintf(port, sizeof(port), "%d", f.port);
	assert_int_equal(harness_spawn(&p, client, NULL, HARNESS_STDIN_NULL), 0);
	assert_true(fixture_expect(p.out_fd, "exact\n", buf, sizeof(buf), T) > 0);
	harness_cleanup(&p);
	assert_int_equal(fixture_log_wait(&f, "session closed", line, sizeof(line)), 0);
	print_message("%s\n", line);
	assert_true(strstr(line, "ktls=send splice") != NULL ||
		    strstr(line, "ktls=both splice") != NULL);
	assert_int_equal(fixture_finish(&f, PASSWORD), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_kernel_encrypts_and_the_relay_splices),
	};

	return test_exit(cmocka_run_group_tests_name("ktls", tests, NULL, NULL));
}
