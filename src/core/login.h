/* login: the dialogue a client goes through before its credentials are
 * checked, as a list of steps: a prompt, and a line that answers it: the
 * username, the password and, with a second factor, the verification code.
 * Pure (no I/O, no clock): the session reads the lines, writes the prompts and
 * submits the check. */
#ifndef SOCKGATE_LOGIN_H
#define SOCKGATE_LOGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"
#include "config.h"
#include "line.h"
#include "loop.h"

enum login_step {
	LOGIN_USERNAME = 0,
	LOGIN_PASSWORD,
	LOGIN_CODE,
	LOGIN_PAM,    /* a PAM module asked something (pamauth.h) */
	LOGIN_TARGET, /* after the login: which target (login.target = "menu") */
	LOGIN__STEPS
};

/* A login under way: what it read, what it answered, where it is. The session
 * owns it and wipes it when it ends (it holds a password). */
struct login {
	struct line_reader in;
	enum login_step step;
	unsigned failures;       /* attempts answered as wrong */
	unsigned empty_lines;    /* at the username prompt, over all attempts */
	bool pam;                /* PAM asks everything after the user name */
	char answer[72];         /* the menu's answer */
	struct loop_timer delay; /* the pause before a failure answer (the session's) */
	struct auth_job job;     /* the answers, handed to the password check */
};

enum login_verdict {
	LOGIN_ASK,           /* send *prompt (the next step's, or the same one again) */
	LOGIN_CHECK,         /* every step is answered: check job's user and password */
	LOGIN_TOO_EMPTY,     /* more empty lines than cfg allows: end the connection */
	LOGIN_PAM_START,     /* PAM: the user name is in job.user; start the transaction */
	LOGIN_PAM_ANSWER,    /* PAM: the answer to its prompt is in job.password */
	LOGIN_TARGET_ANSWER, /* the target chosen from the menu is in answer */
};

/* The prompt of the first step. */
const char *login_first_prompt(const struct config_login *cfg);

/* Takes one line (len bytes, NUL-terminated, wiped if it is a secret) as the
 * answer to the current step. */
enum login_verdict login_take_line(struct login *l, const struct config_login *cfg, char *line,
				   size_t len, const char **prompt);

/* A PAM module asked something: the next line answers it. */
void login_await_pam(struct login *l);
/* The menu of targets is shown: the next line picks one. */
void login_await_target(struct login *l);

/* After a failure: the dialogue starts over at its first step. */
void login_restart(struct login *l);

/* The step's name for logs ("username", "password"). */
const char *login_step_name(const struct login *l);

/* Wipes everything that was typed. */
void login_wipe(struct login *l);

#endif
