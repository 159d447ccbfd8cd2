/* login: the dialogue's steps (see login.h). */
#include "login.h"

#include <stdio.h>
#include <string.h>

const char *login_first_prompt(const struct config_login *cfg)
{
	return cfg->username_prompt;
}

static enum login_verdict login_on_username(struct login *l, const struct config_login *cfg,
					    const char *line, size_t len, const char **prompt)
{
	if (len == 0) {
		/* An empty line asks again; it is no attempt, so it must not be
		 * free either: a few, then the connection ends. */
		if (++l->empty_lines > cfg->max_empty_lines)
			return LOGIN_TOO_EMPTY;
		*prompt = cfg->username_prompt;
		return LOGIN_ASK;
	}
	memcpy(l->job.user, line, len + 1);
	if (l->pam)
		return LOGIN_PAM_START;
	l->step = LOGIN_PASSWORD;
	*prompt = cfg->password_prompt;
	return LOGIN_ASK;
}

/* Keeps a secret line in dst (size bytes): at most one byte past what is
 * checked, enough for the check to see an overlong answer as one. */
static void login_keep_secret(char *dst, size_t size, char *line, size_t len)
{
	size_t kept = len < size - 1 ? len : size - 1;

	memcpy(dst, line, kept);
	dst[kept] = '\0';
	explicit_bzero(line, len);
}

static enum login_verdict login_on_password(struct login *l, const struct config_login *cfg,
					    char *line, size_t len, const char **prompt)
{
	login_keep_secret(l->job.password, sizeof(l->job.password), line, len);
	/* The code is asked whatever the password was: the client learns nothing
	 * until every answer is in. */
	if (cfg->second_factor == CONFIG_FACTOR_TOTP) {
		l->step = LOGIN_CODE;
		*prompt = cfg->code_prompt;
		return LOGIN_ASK;
	}
	return LOGIN_CHECK;
}

static enum login_verdict login_on_code(struct login *l, const struct config_login *cfg, char *line,
					size_t len)
{
	login_keep_secret(l->job.code, sizeof(l->job.code), line, len);
	l->job.with_code = true;
	l->job.totp_window = cfg->totp_window;
	return LOGIN_CHECK;
}

enum login_verdict login_take_line(struct login *l, const struct config_login *cfg, char *line,
				   size_t len, const char **prompt)
{
	*prompt = NULL;
	if (l->step == LOGIN_USERNAME)
		return login_on_username(l, cfg, line, len, prompt);
	if (l->step == LOGIN_PASSWORD)
		return login_on_password(l, cfg, line, len, prompt);
	if (l->step == LOGIN_TARGET) {
		snprintf(l->answer, sizeof(l->answer), "%.*s", (int)len, line);
		return LOGIN_TARGET_ANSWER;
	}
	if (l->step == LOGIN_PAM) {
		login_keep_secret(l->job.password, sizeof(l->job.password), line, len);
		return LOGIN_PAM_ANSWER;
	}
	return login_on_code(l, cfg, line, len);
}

void login_await_pam(struct login *l)
{
	l->step = LOGIN_PAM;
}

void login_await_target(struct login *l)
{
	l->step = LOGIN_TARGET;
}

void login_restart(struct login *l)
{
	memset(l->job.user, 0, sizeof(l->job.user));
	explicit_bzero(l->job.password, sizeof(l->job.password));
	explicit_bzero(l->job.code, sizeof(l->job.code));
	l->job.with_code = false;
	l->step = LOGIN_USERNAME;
}

const char *login_step_name(const struct login *l)
{
	static const char *const names[LOGIN__STEPS] = {
		[LOGIN_USERNAME] = "username", [LOGIN_PASSWORD] = "password", [LOGIN_CODE] = "code",
		[LOGIN_PAM] = "pam",           [LOGIN_TARGET] = "target",
	};

	return (unsigned)l->step < LOGIN__STEPS ? names[l->step] : "?";
}

void login_wipe(struct login *l)
{
	line_wipe(&l->in);
	explicit_bzero(l->job.password, sizeof(l->job.password));
	explicit_bzero(l->job.code, sizeof(l->job.code));
}
