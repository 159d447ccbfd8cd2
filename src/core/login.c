/* login: the dialogue's steps (see login.h). */
#include "login.h"

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
	l->step = LOGIN_PASSWORD;
	*prompt = cfg->password_prompt;
	return LOGIN_ASK;
}

static enum login_verdict login_on_password(struct login *l, char *line, size_t len)
{
	/* At most one byte past what is checked: enough for the check to see an
	 * overlong password as one. */
	size_t kept = len < sizeof(l->job.password) - 1 ? len : sizeof(l->job.password) - 1;

	memcpy(l->job.password, line, kept);
	l->job.password[kept] = '\0';
	explicit_bzero(line, len);
	return LOGIN_CHECK;
}

enum login_verdict login_take_line(struct login *l, const struct config_login *cfg, char *line,
				   size_t len, const char **prompt)
{
	*prompt = NULL;
	if (l->step == LOGIN_USERNAME)
		return login_on_username(l, cfg, line, len, prompt);
	return login_on_password(l, line, len);
}

void login_restart(struct login *l)
{
	memset(l->job.user, 0, sizeof(l->job.user));
	explicit_bzero(l->job.password, sizeof(l->job.password));
	l->step = LOGIN_USERNAME;
}

const char *login_step_name(const struct login *l)
{
	static const char *const names[LOGIN__STEPS] = {
		[LOGIN_USERNAME] = "username",
		[LOGIN_PASSWORD] = "password",
	};

	return (unsigned)l->step < LOGIN__STEPS ? names[l->step] : "?";
}

void login_wipe(struct login *l)
{
	line_wipe(&l->in);
	explicit_bzero(l->job.password, sizeof(l->job.password));
}
