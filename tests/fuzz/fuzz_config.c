/* fuzz_config: config_parse_flags() on arbitrary text, with host names refused
 * unresolved (CONFIG_PARSE_NUMERIC_HOSTS): a fuzzer must never wait on DNS. An
 * accepted configuration is checked against the promises of config.h; a refused
 * one must say which file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Absolute, so relative credentials paths resolve without getcwd(). */
#define NAME "/fuzz/sockgate.conf"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const struct config_gateway *gw)
{
	fprintf(stderr, "fuzz_config: %s (gateway \"%s\")\n", what,
		gw != NULL && gw->name != NULL ? gw->name : "?");
	abort();
}

static void check_addrs(const struct config_addr *a, size_t n, const struct config_gateway *gw)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i].ss.ss_family != AF_INET && a[i].ss.ss_family != AF_INET6)
			die("an address that is neither IPv4 nor IPv6", gw);
		if (memchr(a[i].text, '\0', sizeof(a[i].text)) == NULL ||
		    memchr(a[i].resolved, '\0', sizeof(a[i].resolved)) == NULL)
			die("an address text without its NUL", gw);
	}
}

static void check_text(const char *s, size_t min, const struct config_gateway *gw)
{
	if (s == NULL || strlen(s) < min || strlen(s) > CONFIG_MAX_TEXT)
		die("a login text missing or out of bounds", gw);
}

static void check_config(const struct config *cfg)
{
	if (cfg->refs != 1 || cfg->path == NULL || strcmp(cfg->path, NAME) != 0)
		die("wrong refs or path", NULL);
	if (cfg->n_gateways == 0 || cfg->gateways == NULL)
		die("no gateway", NULL);
	for (size_t i = 0; i < cfg->n_gateways; i++) {
		const struct config_gateway *gw = &cfg->gateways[i];

		if (gw->name == NULL || gw->name[0] == '\0')
			die("a gateway without a name", gw);
		if (config_find_gateway(cfg, gw->name) != gw)
			die("gateway names are not unique", gw);
		if (gw->n_upstream == 0 || gw->upstream == NULL)
			die("a gateway without an upstream", gw);
		check_addrs(gw->upstream, gw->n_upstream, gw);
		check_addrs(gw->listen, gw->n_listen, gw);
		if (gw->authenticate && gw->auth == CONFIG_AUTH_FILE && gw->credentials == NULL)
			die("an authenticating gateway without credentials", gw);
		if (gw->auth == CONFIG_AUTH_PAM &&
		    (gw->credentials != NULL || gw->login.second_factor != CONFIG_FACTOR_NONE ||
		     gw->pam_service == NULL || strchr(gw->pam_service, '/') != NULL))
			die("a PAM gateway with credentials, a second factor or a bad service", gw);
		if (gw->login.second_factor == CONFIG_FACTOR_TOTP)
			check_text(gw->login.code_prompt, 1, gw);
		if (gw->login.totp_window > 10)
			die("a TOTP window wider than 10", gw);
		if ((gw->credentials == NULL) != (gw->credentials_path == NULL) ||
		    (gw->credentials_path != NULL && gw->credentials_path[0] != '/'))
			die("credentials path missing or relative", gw);
		check_text(gw->login.username_prompt, 1, gw);
		check_text(gw->login.password_prompt, 1, gw);
		check_text(gw->login.success_message, 0, gw);
		check_text(gw->login.failure_message, 0, gw);
		if (gw->login.max_attempts < 1 || gw->login.max_attempts > 100 ||
		    gw->login.grace_time_ms > 3600 * 1000 || gw->connect_timeout_ms > 3600 * 1000 ||
		    gw->idle_timeout_ms > 31536000ull * 1000 || gw->max_sessions < 1)
			die("a number out of its documented range", gw);
	}
	if (config_find_gateway(cfg, "") != NULL)
		die("a gateway found by an empty name", NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* Relative credentials paths would follow it; keep runs reproducible. */
	unsetenv("CREDENTIALS_DIRECTORY");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errbuf err = {{0}};
	struct config *cfg;
	char *text;

	/* config_load() refuses a NUL byte and a file over the cap before parsing;
	 * such inputs cannot reach config_parse() from a file. */
	if (size > CONFIG_MAX_FILE_SIZE || memchr(data, '\0', size) != NULL)
		return -1;
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	cfg = config_parse_flags(NAME, text, CONFIG_PARSE_NUMERIC_HOSTS, &err);
	if (cfg == NULL) {
		if (strncmp(err.msg, NAME ":", strlen(NAME ":")) != 0) {
			fprintf(stderr, "fuzz_config: message without the file name: %s\n",
				err.msg);
			abort();
		}
	} else {
		check_config(cfg);
		config_unref(config_ref(cfg));
		config_unref(cfg);
	}
	free(text);
	return 0;
}
