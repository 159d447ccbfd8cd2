/* pam_sgtest: a PAM module for tests only, the directory's verdicts on demand.
 * As an account module: "expired=USER" answers PAM_ACCT_EXPIRED for USER,
 * "newtok=USER" PAM_NEW_AUTHTOK_REQD, everyone else PAM_SUCCESS. As an auth
 * module: "info=TEXT" sends TEXT as a PAM_TEXT_INFO line, then succeeds (it
 * stacks after a module that checks). Never installed. */
#include <string.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

static const char *arg_value(int argc, const char **argv, const char *name)
{
	size_t len = strlen(name);

	for (int i = 0; i < argc; i++)
		if (strncmp(argv[i], name, len) == 0 && argv[i][len] == '=')
			return argv[i] + len + 1;
	return NULL;
}

int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	const char *user = NULL, *v;

	(void)flags;
	if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL)
		return PAM_USER_UNKNOWN;
	v = arg_value(argc, argv, "expired");
	if (v != NULL && strcmp(v, user) == 0)
		return PAM_ACCT_EXPIRED;
	v = arg_value(argc, argv, "newtok");
	if (v != NULL && strcmp(v, user) == 0)
		return PAM_NEW_AUTHTOK_REQD;
	return PAM_SUCCESS;
}

int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	const char *info = arg_value(argc, argv, "info");

	(void)flags;
	if (info != NULL)
		pam_info(pamh, "%s", info);
	return PAM_SUCCESS;
}

int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh;
	(void)flags;
	(void)argc;
	(void)argv;
	return PAM_SUCCESS;
}
