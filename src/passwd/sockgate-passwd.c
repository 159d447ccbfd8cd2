/* sockgate-passwd: creates and edits sockgate credentials files ("user:hash"
 * lines with optional fields), in the manner of htpasswd and usermod. Every
 * change replaces the whole file atomically and keeps all other lines byte for
 * byte; parsing and checking passwords is left to the core credentials module. */
#include "credentials.h"
#include "totp.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <qrencode.h>

#define PROG "sockgate-passwd"

/* A new TOTP secret: its issuer name, and its QR code. */
#define ISSUER_DEFAULT "sockgate"
#define ISSUER_MAX     64 /* bytes of an --issuer name */
#define QR_QUIET       4  /* modules of light margin a scanner needs around a QR code */

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
};

enum mode {
	MODE_SET,
	MODE_DELETE,
	MODE_VERIFY,
	MODE_LIST,
};

/* What a run does to one attribute of the user's entry. */
enum change {
	CHANGE_KEEP = 0,
	CHANGE_SET,
	CHANGE_REMOVE,
};

/* Long options without a short form. */
enum {
	OPT_STDIN = 256,
	OPT_EXPIRES,
	OPT_GROUPS,
	OPT_TOTP,
	OPT_TOTP_SECRET,
	OPT_TOTP_REMOVE,
	OPT_TOTP_ALG,
	OPT_TOTP_DIGITS,
	OPT_TOTP_PERIOD,
	OPT_ISSUER,
};

struct options {
	enum mode mode;
	bool create;
	bool from_stdin;
	bool set_password; /* MODE_SET: a new password, besides any attribute changes */
	const struct method *method;
	const char *file;
	const char *user;
	enum change lock; /* SET: -L, REMOVE: -U */
	enum change expires;
	const char *expires_date; /* "YYYY-MM-DD", checked */
	int64_t expires_day;
	enum change groups;
	const char *groups_list; /* "a,b", checked */
	enum change totp_change;
	bool totp_import;        /* --totp-secret: the secret is given, not drawn */
	struct totp_params totp; /* wiped before exit */
	const char *issuer;
};

/* The file as read, and the descriptor whose lock serialises editors. */
struct file_data {
	char *path; /* after symlinks, so the link itself survives a rewrite */
	char *text;
	size_t len;
	struct stat st;
	int lock_fd;
};

struct buffer {
	char *p;
	size_t len, cap;
};

/* One password with room to notice that the input was too long. */
struct password {
	char s[CREDENTIALS_MAX_PASSWORD + 1];
	size_t len;
};

struct method {
	const char *name;
	const char *prefix; /* for crypt_gensalt */
	size_t max_bytes;   /* of a password it hashes in full; 0: no limit of its own */
};

/* bcrypt ignores everything after a password's first 72 bytes. */
static const struct method methods[] = {
	{"yescrypt", "$y$", 0},
	{"bcrypt", "$2b$", 72},
	{"sha512", "$6$", 0},
};

static volatile sig_atomic_t got_signal;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " PROG
		" [-c] [--stdin] [-m METHOD] [CHANGES] FILE USER   set USER's password\n"
		"       " PROG " CHANGES FILE USER                   change USER's account\n"
		"       " PROG " -D FILE USER                        delete USER\n"
		"       " PROG " -v [--stdin] FILE USER              check USER's password\n"
		"       " PROG " -l FILE                             list users and their state\n"
		"\n"
		"  -c, --create          create FILE (mode 0600); refuses an existing file\n"
		"  -m, --method M        yescrypt (default), bcrypt or sha512\n"
		"      --stdin           read the password from one line of standard input\n"
		"  -D, --delete          delete USER\n"
		"  -v, --verify          exit 0 if the password is USER's, 1 if not\n"
		"  -l, --list            print each user, then its state, tab-separated\n"
		"  -h, --help            show this help\n"
		"  -V, --version         show the version\n"
		"\n"
		"CHANGES (without -c or --stdin they keep USER's password, and USER must exist):\n"
		"  -L, --lock            lock the account (the password is kept)\n"
		"  -U, --unlock          unlock it\n"
		"      --expires DATE    refuse USER from DATE (YYYY-MM-DD, UTC); never: none\n"
		"      --groups LIST     USER's groups (a,b,...); \"\": none\n"
		"      --totp            a new TOTP secret; prints its otpauth:// URI on stdout,\n"
		"                        and a QR code when stdout is a terminal\n"
		"      --totp-secret B32 as --totp, with a secret from elsewhere (base32)\n"
		"      --totp-algorithm SHA1 (default), SHA256 or SHA512\n"
		"      --totp-digits N   6 (default), 7 or 8\n"
		"      --totp-period S   seconds per code, 10 to 300 (default 30)\n"
		"      --issuer NAME     the name the app shows (default " ISSUER_DEFAULT ")\n"
		"      --totp-remove     remove the TOTP secret\n");
}

static void msg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg_warn(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int buffer_add(struct buffer *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap == 0 ? 4096 : b->cap;
		char *np;

		while (ncap < b->len + n + 1)
			ncap *= 2;
		np = realloc(b->p, ncap);
		if (np == NULL)
			return -1;
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static void buffer_free(struct buffer *b)
{
	if (b->p != NULL)
		explicit_bzero(b->p, b->cap);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static void on_signal(int sig)
{
	got_signal = sig;
}

/* Reads one line from fd a byte at a time, so nothing after the newline is
 * consumed. Returns 0, or -1 with err set; an overlong line is drained and
 * refused rather than silently truncated. */
static int line_read(int fd, struct password *pw, struct errbuf *err)
{
	bool too_long = false;
	size_t n = 0;

	for (;;) {
		char ch;
		ssize_t r;

		if (got_signal != 0)
			return errbuf_set(err, "interrupted");
		r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errbuf_errno(err, errno, "cannot read the password");
		if (r == 0 || ch == '\n')
			break;
		if (n < CREDENTIALS_MAX_PASSWORD)
			pw->s[n++] = ch;
		else
			too_long = true;
	}
	/* A script writing "pw\r\n" means "pw"; a login prompt could never send
	 * the '\r' back. */
	if (n > 0 && pw->s[n - 1] == '\r')
		n--;
	pw->s[n] = '\0';
	pw->len = n;
	if (too_long)
		return errbuf_set(err, "password longer than %d bytes, the most sockgate checks",
				  CREDENTIALS_MAX_PASSWORD);
	return 0;
}

/* A new password must be all that counts: bcrypt would make every password
 * that shares its first 72 bytes the same one, silently. Checked before the
 * retype, so nobody types a long password twice for nothing. */
static int password_fits(const struct options *o, const struct password *pw, struct errbuf *err)
{
	size_t max = o->method->max_bytes;

	/* The gateway's login refuses control bytes (sockgate(8)), and crypt(3)
	 * would stop at a NUL: such a password could never be used as set. */
	for (size_t i = 0; i < pw->len; i++)
		if ((unsigned char)pw->s[i] < 0x20 || pw->s[i] == 0x7f)
			return errbuf_set(
				err,
				"the password has a control character (byte %zu is 0x%02x), "
				"which no login at the gateway can send",
				i + 1, (unsigned char)pw->s[i]);
	if (max != 0 && pw->len > max)
		return errbuf_set(err,
				  "password is %zu bytes; %s uses only the first %zu: choose a "
				  "shorter one or use yescrypt (the default)",
				  pw->len, o->method->name, max);
	return 0;
}

/* Prompts on the terminal with echo off. Signals that would end the program
 * mid-read restore the terminal first, then take their default action. */
static int tty_read(int fd, int prompt_fd, const char *prompt, struct password *pw,
		    struct errbuf *err)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
	struct sigaction sa, old[sizeof(sigs) / sizeof(sigs[0])];
	struct termios saved, quiet;
	int rc;

	if (tcgetattr(fd, &saved) < 0)
		return errbuf_errno(err, errno, "cannot read the terminal settings");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: read() must return EINTR */
	sigemptyset(&sa.sa_mask);
	got_signal = 0;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, &old[i]);

	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
	quiet.c_lflag |= ECHONL;
	/* Echo goes off before the prompt shows: TCSAFLUSH drops only what was
	 * typed ahead (and echoed), never what is typed after the prompt. */
	if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0) {
		rc = errbuf_errno(err, errno, "cannot prepare the terminal");
	} else {
		if (write(prompt_fd, prompt, strlen(prompt)) < 0)
			rc = errbuf_errno(err, errno, "cannot write the prompt");
		else
			rc = line_read(fd, pw, err);
		tcsetattr(fd, TCSAFLUSH, &saved);
	}

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &old[i], NULL);
	if (got_signal != 0)
		raise(got_signal);
	return rc;
}

/* Reads the password (twice when setting one, to catch typos). */
static int password_get(const struct options *o, struct password *pw, struct errbuf *err)
{
	struct password again;
	char prompt[CREDENTIALS_MAX_USER + 40];
	int fd, prompt_fd, rc = -1;

	if (o->from_stdin) {
		if (line_read(STDIN_FILENO, pw, err) < 0)
			return -1;
		if (pw->len == 0)
			return errbuf_set(err, "empty password on standard input");
		if (o->mode == MODE_SET)
			return password_fits(o, pw, err);
		return 0;
	}
	/* The controlling terminal, so the password is asked for even when
	 * standard input is redirected; failing that, stdin if it is a terminal. */
	fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	prompt_fd = fd;
	if (fd < 0 && isatty(STDIN_FILENO)) {
		fd = dup(STDIN_FILENO);
		prompt_fd = STDERR_FILENO;
	}
	if (fd < 0)
		return errbuf_set(err, "no terminal to ask for the password; use --stdin");

	snprintf(prompt, sizeof(prompt),
		 "%s for %s: ", o->mode == MODE_SET ? "New password" : "Password", o->user);
	if (tty_read(fd, prompt_fd, prompt, pw, err) < 0)
		goto out;
	if (o->mode == MODE_SET) {
		if (pw->len == 0) {
			errbuf_set(err, "empty password");
			goto out;
		}
		if (password_fits(o, pw, err) < 0)
			goto out;
		if (tty_read(fd, prompt_fd, "Retype new password: ", &again, err) < 0)
			goto out;
		if (again.len != pw->len || memcmp(again.s, pw->s, pw->len) != 0) {
			errbuf_set(err, "passwords do not match");
			goto out;
		}
	}
	rc = 0;

out:
	explicit_bzero(&again, sizeof(again));
	close(fd);
	return rc;
}

static int hash_make(const char *prefix, const struct password *pw, struct buffer *out,
		     struct errbuf *err)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data;
	const char *h;
	int rc = -1;

	/* yescrypt's default cost is sound; bcrypt's (5) and sha512-crypt's (5000
	 * rounds) date from slower machines, so ask for more: a few tens of ms per
	 * guess, like yescrypt. NULL random bytes: libxcrypt draws the salt from
	 * the kernel itself. */
	unsigned long count = strcmp(prefix, "$2b$") == 0  ? 10
			      : strcmp(prefix, "$6$") == 0 ? 200000
							   : 0;

	if (crypt_gensalt_rn(prefix, count, NULL, 0, setting, sizeof(setting)) == NULL)
		return errbuf_errno(err, errno, "cannot make a salt for %s", prefix);
	data = calloc(1, sizeof(*data));
	if (data == NULL)
		return errbuf_errno(err, ENOMEM, "cannot hash the password");
	memcpy(data->input, pw->s, pw->len + 1);
	h = crypt_r(data->input, setting, data);
	if (h == NULL || h[0] == '*')
		errbuf_errno(err, errno, "cannot hash the password");
	else if (buffer_add(out, h, strlen(h)) < 0)
		errbuf_errno(err, ENOMEM, "cannot hash the password");
	else
		rc = 0;
	explicit_bzero(data, sizeof(*data));
	free(data);
	return rc;
}

/* Opens path (following symlinks) and reads it. With lock, the file is also
 * locked, and the lock is retaken if another editor replaced the file while
 * we waited, so two concurrent runs cannot lose one another's change. */
static int file_read(const char *path, bool lock, struct file_data *f, struct errbuf *err)
{
	for (int tries = 0; tries < 10; tries++) {
		struct stat now;
		size_t cap;

		free(f->path);
		f->path = realpath(path, NULL);
		if (f->path == NULL)
			return errbuf_errno(err, errno, "%s", path);
		f->lock_fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (f->lock_fd < 0)
			return errbuf_errno(err, errno, "%s", path);
		if (fstat(f->lock_fd, &f->st) < 0)
			return errbuf_errno(err, errno, "%s", path);
		if (!S_ISREG(f->st.st_mode))
			return errbuf_set(err, "%s: not a regular file", path);
		if (lock) {
			if (flock(f->lock_fd, LOCK_EX) < 0)
				return errbuf_errno(err, errno, "%s: cannot lock", path);
			if (stat(f->path, &now) < 0 || now.st_ino != f->st.st_ino ||
			    now.st_dev != f->st.st_dev) {
				close(f->lock_fd);
				f->lock_fd = -1;
				continue;
			}
			if (fstat(f->lock_fd, &f->st) < 0)
				return errbuf_errno(err, errno, "%s", path);
		}
		if ((unsigned long long)f->st.st_size > CREDENTIALS_MAX_FILE_SIZE)
			return errbuf_set(err, "%s: larger than %u MiB", path,
					  CREDENTIALS_MAX_FILE_SIZE >> 20);
		cap = (size_t)f->st.st_size + 1;
		f->text = malloc(cap);
		if (f->text == NULL)
			return errbuf_errno(err, ENOMEM, "%s", path);
		f->len = 0;
		for (;;) {
			ssize_t r = read(f->lock_fd, f->text + f->len, cap - f->len);

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return errbuf_errno(err, errno, "%s: read", path);
			if (r == 0)
				break;
			f->len += (size_t)r;
			if (f->len == cap)
				return errbuf_set(err, "%s: changed while being read", path);
		}
		f->text[f->len] = '\0';
		return 0;
	}
	return errbuf_set(err, "%s: keeps being replaced; try again", path);
}

static void file_free(struct file_data *f)
{
	if (f->lock_fd >= 0)
		close(f->lock_fd);
	free(f->path);
	/* The file may hold TOTP secrets, which, unlike hashes, log anyone in. */
	if (f->text != NULL)
		explicit_bzero(f->text, f->len);
	free(f->text);
}

/* Writes data to a new file in path's directory, gives it mode and owner,
 * syncs it and renames it over path (or, with noreplace, only if path still
 * does not exist), then syncs the directory. On failure path is untouched and
 * the temporary file is gone. */
static int file_replace(const char *path, const struct buffer *data, mode_t mode, uid_t uid,
			gid_t gid, bool noreplace, struct errbuf *err)
{
	char *dcopy = strdup(path), *bcopy = strdup(path);
	char *tmp = NULL;
	const char *dir, *base;
	bool renamed = false;
	struct stat st;
	size_t off = 0;
	int fd = -1, dfd, rc = -1;

	if (dcopy == NULL || bcopy == NULL) {
		errbuf_errno(err, ENOMEM, "%s", path);
		goto out;
	}
	dir = dirname(dcopy);
	base = basename(bcopy);
	if (asprintf(&tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
		tmp = NULL;
		errbuf_errno(err, ENOMEM, "%s", path);
		goto out;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		errbuf_errno(err, errno, "%s: cannot create a temporary file in %s", path, dir);
		free(tmp);
		tmp = NULL;
		goto out;
	}
	while (off < data->len) {
		ssize_t w = write(fd, data->p + off, data->len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			errbuf_errno(err, errno, "%s: cannot write %s", path, tmp);
			goto out;
		}
		off += (size_t)w;
	}
	/* Owner first: chown may clear mode bits that fchmod then sets. */
	if (fstat(fd, &st) < 0 ||
	    ((st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) < 0)) {
		errbuf_errno(err, errno, "%s: cannot keep owner %u:%u", path, (unsigned)uid,
			     (unsigned)gid);
		goto out;
	}
	if (fchmod(fd, mode & 07777) < 0 || fsync(fd) < 0) {
		errbuf_errno(err, errno, "%s: cannot set up %s", path, tmp);
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		errbuf_errno(err, errno, "%s: cannot write %s", path, tmp);
		goto out;
	}
	fd = -1;
	if (noreplace) {
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
			renamed = true;
		} else if (errno == EINVAL || errno == ENOSYS) {
			/* No RENAME_NOREPLACE on this file system: link() also
			 * refuses to replace, and the unlink below drops the
			 * temporary name. */
			if (link(tmp, path) < 0) {
				errbuf_errno(err, errno, "%s", path);
				goto out;
			}
		} else {
			errbuf_errno(err, errno, "%s", path);
			goto out;
		}
	} else if (rename(tmp, path) < 0) {
		errbuf_errno(err, errno, "%s: cannot replace it", path);
		goto out;
	} else {
		renamed = true;
	}
	/* Without this the rename may not survive a crash. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0) {
		errbuf_errno(err, errno, "%s: written, but syncing directory %s failed", path, dir);
		if (dfd >= 0)
			close(dfd);
		goto out;
	}
	close(dfd);
	rc = 0;

out:
	if (fd >= 0)
		close(fd);
	if (tmp != NULL && !renamed)
		unlink(tmp);
	free(tmp);
	free(dcopy);
	free(bcopy);
	return rc;
}

/* True if line (len bytes, terminator included) is user's entry. Valid user
 * names hold no ':' or whitespace and cannot start with '#', so "USER:" at the
 * start of the line is exactly what the parser would read as user's entry. */
static bool line_is_user(const char *line, size_t len, const char *user, size_t ulen)
{
	return len > ulen && memcmp(line, user, ulen) == 0 && line[ulen] == ':';
}

/* Copies text to out, replacing user's first entry by entry (NULL deletes
 * it) and dropping later duplicates. Returns how many entries matched. */
static int text_edit(const struct file_data *f, const char *name, const char *user,
		     const struct buffer *entry, struct buffer *out)
{
	size_t ulen = strlen(user), pos = 0;
	unsigned lineno = 0;
	int found = 0;

	while (pos < f->len) {
		const char *line = f->text + pos;
		const char *nl = memchr(line, '\n', f->len - pos);
		size_t len = nl != NULL ? (size_t)(nl - line) + 1 : f->len - pos;
		int rc = 0;

		pos += len;
		lineno++;
		if (!line_is_user(line, len, user, ulen)) {
			rc = buffer_add(out, line, len);
		} else if (found++ == 0 && entry != NULL) {
			/* Keep the old line's ending: "\n", "\r\n" or none at EOF. */
			size_t body = nl != NULL ? len - 1 : len;

			if (body > 0 && line[body - 1] == '\r')
				body--;
			rc = buffer_add(out, entry->p, entry->len);
			if (rc == 0)
				rc = buffer_add(out, line + body, len - body);
		} else if (entry != NULL) {
			msg_warn("%s:%u: dropped a duplicate entry for %s", name, lineno, user);
		}
		if (rc < 0)
			return -1;
	}
	if (entry != NULL && found == 0) {
		if (f->len > 0 && f->text[f->len - 1] != '\n' && buffer_add(out, "\n", 1) < 0)
			return -1;
		if (buffer_add(out, entry->p, entry->len) < 0 || buffer_add(out, "\n", 1) < 0)
			return -1;
	}
	return found;
}

static int buffer_adds(struct buffer *b, const char *s)
{
	return buffer_add(b, s, strlen(s));
}

/* A user's entry as the file has it: "user:[!]hash[:name=value]...". Unlike
 * the parser, any '!' counts as a lock here: usermod -L adds one to whatever
 * the field holds, and -U takes it off again. */
struct entry_old {
	bool found;
	const char *body; /* after "user:", without the line ending */
	size_t body_len;
	bool locked;
	const char *hash;
	size_t hash_len;
	const char *fields; /* ":name=value..." after the hash, or empty */
	size_t fields_len;
	bool has_expires, has_groups, has_totp;
};

/* Steps *p (at the ':' before a field, or at end) to the next field; false
 * when there are no more. */
static bool field_next(const char **p, const char *end, const char **field, size_t *len)
{
	const char *start, *colon;

	if (*p >= end)
		return false;
	start = *p + 1;
	/* The daemon's rule: a field starts at ':' NAME '=' (IPv6 in from=). */
	colon = credentials_next_field(start, end);
	*field = start;
	*len = (size_t)((colon != NULL ? colon : end) - start);
	*p = colon != NULL ? colon : end;
	return true;
}

/* The length of a field's name, or 0 if it is no NAME=VALUE field at all. */
static size_t field_name_len(const char *field, size_t len)
{
	size_t n = 0;

	while (n < len && ((field[n] >= 'a' && field[n] <= 'z') || field[n] == '_'))
		n++;
	return n > 0 && n < len && field[n] == '=' ? n : 0;
}

static bool name_is(const char *field, size_t nlen, const char *name)
{
	return nlen == strlen(name) && memcmp(field, name, nlen) == 0;
}

static bool name_is_totp(const char *field, size_t nlen)
{
	return name_is(field, nlen, "totp") || name_is(field, nlen, "totp_alg") ||
	       name_is(field, nlen, "totp_digits") || name_is(field, nlen, "totp_period");
}

/* Finds user's first entry, as text_edit() will replace it. */
static void entry_find(const struct file_data *f, const char *user, struct entry_old *e)
{
	size_t ulen = strlen(user), pos = 0;

	memset(e, 0, sizeof(*e));
	while (pos < f->len) {
		const char *line = f->text + pos;
		const char *nl = memchr(line, '\n', f->len - pos);
		size_t len = nl != NULL ? (size_t)(nl - line) : f->len - pos;
		const char *p, *end, *field;
		size_t flen;

		pos += len + 1;
		if (!line_is_user(line, len, user, ulen))
			continue;
		if (line[len - 1] == '\r')
			len--;
		e->found = true;
		e->body = line + ulen + 1;
		e->body_len = len - ulen - 1;
		end = e->body + e->body_len;
		e->locked = e->body_len > 0 && e->body[0] == '!';
		e->hash = e->body + e->locked;
		p = memchr(e->hash, ':', (size_t)(end - e->hash));
		e->hash_len = (size_t)((p != NULL ? p : end) - e->hash);
		e->fields = e->hash + e->hash_len;
		e->fields_len = (size_t)(end - e->fields);
		p = e->fields;
		while (field_next(&p, end, &field, &flen)) {
			size_t nlen = field_name_len(field, flen);

			e->has_expires |= name_is(field, nlen, "expires");
			e->has_groups |= name_is(field, nlen, "groups");
			e->has_totp |= name_is(field, nlen, "totp");
		}
		return;
	}
}

/* ":totp=SECRET" and the parameters that differ from RFC 6238's defaults,
 * which the parser assumes. */
static int totp_fields_add(const struct totp_params *t, struct buffer *b)
{
	char b32[TOTP_BASE32_MAX + 1], num[48];
	int rc;

	if (totp_secret_encode(t, b32, sizeof(b32)) < 0)
		return -1;
	rc = buffer_adds(b, ":totp=") | buffer_adds(b, b32);
	explicit_bzero(b32, sizeof(b32));
	if (t->alg != TOTP_SHA1)
		rc |= buffer_adds(b, ":totp_alg=") | buffer_adds(b, totp_alg_name(t->alg));
	if (t->digits != 6) {
		snprintf(num, sizeof(num), ":totp_digits=%u", t->digits);
		rc |= buffer_adds(b, num);
	}
	if (t->period != 30) {
		snprintf(num, sizeof(num), ":totp_period=%u", t->period);
		rc |= buffer_adds(b, num);
	}
	return rc;
}

/* The new entry: old's (if found) with the changes o asks for, and hash (if
 * not NULL) instead of the old one. Fields that do not change keep their text
 * and place; a changed field is rewritten where it stood, a new one goes at
 * the end. dropped counts the parts after a replaced hash that were no field. */
static int entry_build(const struct options *o, const struct entry_old *old,
		       const struct buffer *hash, struct buffer *out, unsigned *dropped)
{
	bool locked = o->lock == CHANGE_SET || (o->lock == CHANGE_KEEP && old->locked);
	bool expires_done = o->expires != CHANGE_SET, groups_done = o->groups != CHANGE_SET;
	bool totp_done = o->totp_change != CHANGE_SET;
	const char *p = old->fields, *end = old->found ? old->fields + old->fields_len : NULL;
	const char *field;
	size_t flen;
	int rc;

	*dropped = 0;
	rc = buffer_adds(out, o->user) | buffer_adds(out, ":");
	if (locked)
		rc |= buffer_adds(out, "!");
	if (hash != NULL)
		rc |= buffer_add(out, hash->p, hash->len);
	else
		rc |= buffer_add(out, old->hash, old->hash_len);
	while (field_next(&p, end, &field, &flen)) {
		size_t nlen = field_name_len(field, flen);

		if (nlen == 0 && hash != NULL) {
			/* Most likely a piece of the broken field the new hash
			 * replaces (a plaintext password with a ':'). */
			(*dropped)++;
		} else if (name_is(field, nlen, "expires") && o->expires != CHANGE_KEEP) {
			if (!expires_done)
				rc |= buffer_adds(out, ":expires=") |
				      buffer_adds(out, o->expires_date);
			expires_done = true;
		} else if (name_is(field, nlen, "groups") && o->groups != CHANGE_KEEP) {
			if (!groups_done)
				rc |= buffer_adds(out, ":groups=") |
				      buffer_adds(out, o->groups_list);
			groups_done = true;
		} else if (name_is_totp(field, nlen) && o->totp_change != CHANGE_KEEP) {
			if (!totp_done)
				rc |= totp_fields_add(&o->totp, out);
			totp_done = true;
		} else {
			rc |= buffer_adds(out, ":") | buffer_add(out, field, flen);
		}
	}
	if (!expires_done)
		rc |= buffer_adds(out, ":expires=") | buffer_adds(out, o->expires_date);
	if (!groups_done)
		rc |= buffer_adds(out, ":groups=") | buffer_adds(out, o->groups_list);
	if (!totp_done)
		rc |= totp_fields_add(&o->totp, out);
	return rc < 0 ? -1 : 0;
}

/* Why sockgate would refuse entry (one line), into why; 0 if it would not. */
static int entry_problem(const char *entry, size_t len, struct errbuf *why)
{
	struct credentials *c = credentials_parse("", entry, len, why);
	size_t skip;

	if (c != NULL) {
		credentials_unref(c);
		return 0;
	}
	/* ":1: user ...": the line number is this check's, not the file's. */
	skip = strncmp(why->msg, ":1: ", 4) == 0 ? 4 : 0;
	memmove(why->msg, why->msg + skip, strlen(why->msg + skip) + 1);
	return -1;
}

/* A change never writes an entry sockgate would refuse. If the entry was
 * refused before the change already, the message says so: the change is not
 * what broke it. */
static int entry_check(const struct options *o, const struct entry_old *old,
		       const struct buffer *entry, struct errbuf *err)
{
	struct errbuf why, why_before;

	if (entry_problem(entry->p, entry->len, &why) == 0)
		return 0;
	if (!o->set_password && old->found) {
		struct buffer before = {0};
		int rc = buffer_adds(&before, o->user) | buffer_adds(&before, ":") |
			 buffer_add(&before, old->body, old->body_len);
		bool broken = rc == 0 && entry_problem(before.p, before.len, &why_before) < 0;

		buffer_free(&before);
		if (broken)
			return errbuf_set(err,
					  "%s: sockgate refuses %s's entry as it stands (%s), and "
					  "would still after this change",
					  o->file, o->user, why_before.msg);
	}
	return errbuf_set(err, "%s: sockgate would refuse %s's entry after this change (%s)",
			  o->file, o->user, why.msg);
}

/* After a change, says whether sockgate would accept the result. A problem
 * elsewhere in the file is only a warning: refusing to write would make it
 * impossible to fix a file one user at a time. */
static void text_check(const char *path, const char *text, size_t len, mode_t mode)
{
	struct credentials *c;
	struct errbuf err;
	char what[256];

	c = credentials_parse(path, text, len, &err);
	if (c == NULL)
		msg_warn("warning: %s; sockgate will refuse the file until that is fixed", err.msg);
	if (credentials_mixed_costs(c, what, sizeof(what)))
		msg_warn("warning: the users in %s have %s; put every user on one method and "
			 "cost (-m)",
			 path, what);
	credentials_unref(c);
	if ((mode & (S_IWGRP | S_IWOTH)) != 0)
		msg_warn("warning: %s is writable by group or others; sockgate will refuse it",
			 path);
}

/* Whether a module of qr, with the light margin around it, is light. Below the
 * margin (a last half row) is the terminal's own background, dark. */
static bool qr_light(const QRcode *qr, int x, int y)
{
	if (y >= qr->width + 2 * QR_QUIET)
		return false;
	x -= QR_QUIET;
	y -= QR_QUIET;
	if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
		return true;
	return (qr->data[y * qr->width + x] & 1) == 0;
}

/* Draws text as a QR code on stdout, two modules a character cell. As
 * qrencode -t UTF8 does, a light module is a block in the text colour and a
 * dark one the background: for the usual light-on-dark terminal. */
static int qr_print(const char *text, struct errbuf *err)
{
	/* By (top light) << 1 | (bottom light): " ", "▄", "▀", "█" in UTF-8. */
	static const char *const cells[4] = {" ", "\xe2\x96\x84", "\xe2\x96\x80", "\xe2\x96\x88"};
	QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
	struct winsize ws;
	int size;

	if (qr == NULL)
		return errbuf_errno(err, errno, "cannot make the QR code");
	size = qr->width + 2 * QR_QUIET;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_col < size)
		msg_warn("note: the QR code is %d columns wide, the terminal %u: widen the "
			 "terminal to scan it, or enter the URI",
			 size, (unsigned)ws.ws_col);
	for (int y = 0; y < size; y += 2) {
		for (int x = 0; x < size; x++)
			fputs(cells[qr_light(qr, x, y) << 1 | qr_light(qr, x, y + 1)], stdout);
		putchar('\n');
	}
	/* The modules spell the secret. */
	explicit_bzero(qr->data, (size_t)qr->width * (size_t)qr->width);
	QRcode_free(qr);
	return 0;
}

/* The otpauth:// URI on stdout, the one place the secret is ever shown, and,
 * for a person at a terminal, its QR code. */
static int totp_show(const struct options *o, struct errbuf *err)
{
	size_t cap = 160 + TOTP_BASE32_MAX + 3 * (2 * strlen(o->issuer) + strlen(o->user));
	char *uri = malloc(cap);
	int rc = -1;

	if (uri == NULL)
		return errbuf_errno(err, ENOMEM, "cannot make the otpauth URI");
	if (totp_uri(&o->totp, o->issuer, o->user, uri, cap) < 0) {
		errbuf_set(err, "cannot make the otpauth URI");
	} else {
		printf("%s\n", uri);
		rc = isatty(STDOUT_FILENO) ? qr_print(uri, err) : 0;
	}
	explicit_bzero(uri, cap);
	free(uri);
	return rc;
}

/* What changed, on out (stderr when stdout carries the URI), and notes on
 * stderr for changes that were already so. With !written nothing was. */
static void entry_report(const struct options *o, const struct entry_old *old, bool written,
			 FILE *out)
{
	if (written && o->set_password)
		fprintf(out, "%s password for %s in %s\n", old->found ? "Updated" : "Added",
			o->user, o->file);
	if (o->lock == CHANGE_SET && old->locked)
		msg_warn("note: %s is locked already", o->user);
	else if (o->lock == CHANGE_SET && written)
		fprintf(out, "Locked %s in %s\n", o->user, o->file);
	if (o->lock == CHANGE_REMOVE && !old->locked)
		msg_warn("note: %s is not locked", o->user);
	else if (o->lock == CHANGE_REMOVE && written)
		fprintf(out, "Unlocked %s in %s\n", o->user, o->file);
	if (o->lock == CHANGE_KEEP && old->locked && o->set_password)
		msg_warn("note: %s stays locked; -U unlocks the account", o->user);

	if (o->expires == CHANGE_SET) {
		if (written)
			fprintf(out, "Set %s's expiry date to %s in %s\n", o->user, o->expires_date,
				o->file);
		if (time(NULL) / 86400 >= o->expires_day)
			msg_warn("note: %s has come: %s is refused from now on", o->expires_date,
				 o->user);
	} else if (o->expires == CHANGE_REMOVE && !old->has_expires) {
		msg_warn("note: %s has no expiry date", o->user);
	} else if (o->expires == CHANGE_REMOVE && written) {
		fprintf(out, "Removed %s's expiry date in %s\n", o->user, o->file);
	}

	if (o->groups == CHANGE_SET && written)
		fprintf(out, "Set %s's groups to %s in %s\n", o->user, o->groups_list, o->file);
	else if (o->groups == CHANGE_REMOVE && !old->has_groups)
		msg_warn("note: %s has no groups", o->user);
	else if (o->groups == CHANGE_REMOVE && written)
		fprintf(out, "Removed %s's groups in %s\n", o->user, o->file);

	if (o->totp_change == CHANGE_SET && written && old->has_totp)
		fprintf(out, "Replaced %s's TOTP secret in %s\n", o->user, o->file);
	else if (o->totp_change == CHANGE_SET && written)
		fprintf(out, "Added a TOTP secret for %s in %s\n", o->user, o->file);
	else if (o->totp_change == CHANGE_REMOVE && !old->has_totp)
		msg_warn("note: %s has no TOTP secret", o->user);
	else if (o->totp_change == CHANGE_REMOVE && written)
		fprintf(out, "Removed %s's TOTP secret in %s\n", o->user, o->file);
	if (!written)
		fprintf(out, "No change to %s in %s\n", o->user, o->file);
}

/* Sets a password, changes the other attributes of an entry, or both, in one
 * replacement of the file. */
static int run_edit(struct options *o, struct errbuf *err)
{
	struct file_data f = {.lock_fd = -1};
	struct buffer hash = {0}, entry = {0}, out = {0};
	/* stdout is for the URI alone, so that a script can take it. */
	FILE *say = o->totp_change == CHANGE_SET ? stderr : stdout;
	struct entry_old old;
	struct password pw;
	struct errbuf why;
	struct stat st;
	unsigned dropped = 0;
	size_t ulen = strlen(o->user);
	int rc = -1;

	memset(&pw, 0, sizeof(pw));
	/* Cheap checks first, so nobody types a password twice for nothing; the
	 * file is locked and read only after, so the lock is not held while
	 * someone types. */
	if (o->create && lstat(o->file, &st) == 0) {
		errbuf_set(err, "%s already exists; omit -c to change a password in it", o->file);
		goto out;
	}
	if (!o->create && stat(o->file, &st) < 0 && errno == ENOENT) {
		errbuf_set(err, "%s does not exist; use -c to create it", o->file);
		goto out;
	}
	if (o->set_password && password_get(o, &pw, err) < 0)
		goto out;
	if (o->totp_change == CHANGE_SET && !o->totp_import &&
	    totp_secret_generate(&o->totp, &why) < 0) {
		errbuf_set(err, "cannot draw a TOTP secret: %s", why.msg);
		goto out;
	}
	if (o->create) {
		f.st.st_mode = S_IFREG | 0600;
		f.st.st_uid = geteuid();
		f.st.st_gid = getegid();
	} else if (file_read(o->file, true, &f, err) < 0) {
		goto out;
	}
	entry_find(&f, o->user, &old);
	if (!old.found && !o->set_password) {
		errbuf_set(err, "%s: no user %s (add the user with a password first)", o->file,
			   o->user);
		goto out;
	}
	if (o->set_password && hash_make(o->method->prefix, &pw, &hash, err) < 0)
		goto out;
	if (entry_build(o, &old, o->set_password ? &hash : NULL, &entry, &dropped) < 0) {
		errbuf_errno(err, ENOMEM, "%s", o->file);
		goto out;
	}
	if (entry_check(o, &old, &entry, err) < 0)
		goto out;
	/* Asked for what already is (-L on a locked account): the file stays as
	 * it is, not even rewritten. */
	if (!o->set_password && entry.len == ulen + 1 + old.body_len &&
	    memcmp(entry.p + ulen + 1, old.body, old.body_len) == 0) {
		entry_report(o, &old, false, say);
		rc = 0;
		goto out;
	}
	if (text_edit(&f, o->file, o->user, &entry, &out) < 0) {
		errbuf_errno(err, ENOMEM, "%s", o->file);
		goto out;
	}
	if (file_replace(f.path != NULL ? f.path : o->file, &out, f.st.st_mode, f.st.st_uid,
			 f.st.st_gid, o->create, err) < 0)
		goto out;
	entry_report(o, &old, true, say);
	if (dropped > 0)
		msg_warn("dropped %u part%s after %s's old password field that %s no NAME=VALUE "
			 "field",
			 dropped, dropped == 1 ? "" : "s", o->user, dropped == 1 ? "was" : "were");
	if (o->totp_change == CHANGE_SET && (f.st.st_mode & (S_IRGRP | S_IROTH)) != 0)
		msg_warn("warning: %s is readable by group or others (mode %04o), and so is "
			 "%s's TOTP secret; run chmod go-r on it",
			 o->file, (unsigned)(f.st.st_mode & 07777), o->user);
	text_check(o->file, out.p, out.len, f.st.st_mode);
	/* Only once the secret is stored: a phone must never enrol one the file
	 * does not have. */
	if (o->totp_change == CHANGE_SET && totp_show(o, &why) < 0) {
		errbuf_set(err, "%s's TOTP secret is stored in %s, but cannot be shown: %.300s",
			   o->user, o->file, why.msg);
		goto out;
	}
	rc = 0;

out:
	explicit_bzero(&pw, sizeof(pw));
	buffer_free(&hash);
	buffer_free(&entry);
	buffer_free(&out);
	file_free(&f);
	return rc;
}

static int run_delete(const struct options *o, struct errbuf *err)
{
	struct file_data f = {.lock_fd = -1};
	struct buffer out = {0};
	int found, rc = -1;

	if (file_read(o->file, true, &f, err) < 0)
		goto out;
	found = text_edit(&f, o->file, o->user, NULL, &out);
	if (found < 0) {
		errbuf_errno(err, ENOMEM, "%s", o->file);
		goto out;
	}
	if (found == 0) {
		errbuf_set(err, "%s: no user %s", o->file, o->user);
		goto out;
	}
	/* An empty result still needs a buffer to write from. */
	if (out.p == NULL && buffer_add(&out, "", 0) < 0) {
		errbuf_errno(err, ENOMEM, "%s", o->file);
		goto out;
	}
	if (file_replace(f.path, &out, f.st.st_mode, f.st.st_uid, f.st.st_gid, false, err) < 0)
		goto out;
	printf("Deleted %s from %s\n", o->user, o->file);
	text_check(o->file, out.p, out.len, f.st.st_mode);
	rc = 0;

out:
	buffer_free(&out);
	file_free(&f);
	return rc;
}

/* -v and -l read the file without credentials_load()'s owner and mode checks,
 * so anyone who can read a file can inspect it; only root's daemon needs them. */
static struct credentials *file_parse(const char *path, struct errbuf *err)
{
	struct file_data f = {.lock_fd = -1};
	struct credentials *c = NULL;

	if (file_read(path, false, &f, err) == 0)
		c = credentials_parse(path, f.text, f.len, err);
	file_free(&f);
	return c;
}

/* "YYYY-MM-DD" of a day since 1970-01-01, UTC. */
static void day_format(int64_t day, char out[16])
{
	time_t t = (time_t)day * 86400;
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(out, 16, "%Y-%m-%d", &tm) == 0)
		snprintf(out, 16, "?");
}

static int run_verify(const struct options *o, struct errbuf *err)
{
	struct credentials_info info;
	struct credentials *c;
	struct password pw;
	char date[16];
	int rc = -1;

	memset(&pw, 0, sizeof(pw));
	c = file_parse(o->file, err);
	if (c == NULL)
		return -1;
	/* This tool may say which names exist: its user can read the file. */
	if (!credentials_user_info(c, o->user, &info)) {
		errbuf_set(err, "%s: no user %s", o->file, o->user);
		goto out;
	}
	if (password_get(o, &pw, err) < 0)
		goto out;
	switch (credentials_verify(c, o->user, pw.s)) {
	case CREDENTIALS_OK:
		printf("Password for %s is correct\n", o->user);
		/* The password is right, but it alone would not log in. */
		if (info.locked)
			msg_warn("note: %s is locked (-U unlocks the account)", o->user);
		if (time(NULL) / 86400 >= info.expires_day) {
			day_format(info.expires_day, date);
			msg_warn("note: %s expired on %s", o->user, date);
		}
		rc = 0;
		break;
	case CREDENTIALS_DENIED:
		errbuf_set(err, "%s: wrong password for %s", o->file, o->user);
		break;
	case CREDENTIALS_ERROR:
		errbuf_set(err, "%s: cannot check the password for %s (crypt failed)", o->file,
			   o->user);
		break;
	}

out:
	explicit_bzero(&pw, sizeof(pw));
	credentials_unref(c);
	return rc;
}

/* One line of -l: the name, then what is set, each after a tab, in a fixed
 * order; sockgate-passwd(8) documents the format, scripts read it. */
static void list_user(const struct credentials *c, const char *user)
{
	struct credentials_info info;
	char date[16];

	credentials_user_info(c, user, &info);
	fputs(user, stdout);
	if (info.has_totp)
		printf("\ttotp(%s,%u,%u)", totp_alg_name(info.totp_alg), info.totp_digits,
		       info.totp_period);
	if (info.locked)
		fputs("\tlocked", stdout);
	if (info.expires_day != CREDENTIALS_NEVER) {
		day_format(info.expires_day, date);
		printf("\texpires=%s", date);
	}
	if (info.groups != NULL)
		printf("\tgroups=%.*s", (int)info.groups_len, info.groups);
	putchar('\n');
}

static int run_list(const struct options *o, struct errbuf *err)
{
	struct file_data f = {.lock_fd = -1};
	struct credentials *c = NULL;
	char user[CREDENTIALS_MAX_USER + 1];
	size_t pos = 0;
	int rc = -1;

	if (file_read(o->file, false, &f, err) < 0)
		goto out;
	/* Parse first: only a file sockgate would load is listed. */
	c = credentials_parse(o->file, f.text, f.len, err);
	if (c == NULL)
		goto out;
	/* The parser accepted every line, so each one that is not blank or a
	 * comment is an entry with a valid name; print in file order. */
	while (pos < f.len) {
		const char *line = f.text + pos;
		const char *nl = memchr(line, '\n', f.len - pos);
		size_t len = nl != NULL ? (size_t)(nl - line) : f.len - pos;
		const char *colon = memchr(line, ':', len);
		size_t i = strspn(line, " \t");

		pos += len + 1;
		if (colon == NULL || i >= len || line[i] == '#' ||
		    (size_t)(colon - line) > CREDENTIALS_MAX_USER)
			continue;
		memcpy(user, line, (size_t)(colon - line));
		user[colon - line] = '\0';
		list_user(c, user);
	}
	rc = 0;

out:
	credentials_unref(c);
	file_free(&f);
	return rc;
}

static int set_mode(struct options *o, enum mode m)
{
	if (o->mode != MODE_SET && o->mode != m) {
		msg_warn("use only one of -D, -v and -l");
		return -1;
	}
	o->mode = m;
	return 0;
}

/* Records one of two opposite options (-L and -U, --totp and --totp-remove);
 * giving both is a mistake, not "the last one wins". */
static int set_change(enum change *c, enum change to, const char *pair)
{
	if (*c != CHANGE_KEEP && *c != to) {
		msg_warn("use only one of %s", pair);
		return -1;
	}
	*c = to;
	return 0;
}

/* A decimal number from min to max, the whole of s. */
static int number_parse(const char *s, unsigned min, unsigned max, unsigned *out)
{
	unsigned long v;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* The issuer is the label's prefix in the URI and what the app shows: a
 * ':' would split the label anew, control bytes would show as nothing. */
static bool issuer_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > ISSUER_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == ':')
			return false;
	return true;
}

/* One option's argument that is not a mode; EXIT_OK, or EXIT_USAGE after
 * saying why. */
static int option_value(struct options *o, int ch, char *arg)
{
	struct errbuf err;
	const char *problem;

	switch (ch) {
	case 'L':
		return set_change(&o->lock, CHANGE_SET, "-L and -U") < 0 ? EXIT_USAGE : EXIT_OK;
	case 'U':
		return set_change(&o->lock, CHANGE_REMOVE, "-L and -U") < 0 ? EXIT_USAGE : EXIT_OK;
	case OPT_EXPIRES:
		if (strcmp(arg, "never") == 0) {
			o->expires = CHANGE_REMOVE;
			return EXIT_OK;
		}
		if (credentials_parse_date(arg, strlen(arg), &o->expires_day) < 0) {
			msg_warn("--expires: %s is not a date YYYY-MM-DD from 1970 on, nor never",
				 arg);
			return EXIT_USAGE;
		}
		o->expires = CHANGE_SET;
		o->expires_date = arg;
		return EXIT_OK;
	case OPT_GROUPS:
		if (arg[0] == '\0') {
			o->groups = CHANGE_REMOVE;
			return EXIT_OK;
		}
		problem = credentials_groups_problem(arg, strlen(arg));
		if (problem != NULL) {
			msg_warn("--groups: %s (names of A-Z a-z 0-9 . _ -, 1 to %d characters, "
				 "at most %d, separated by commas)",
				 problem, CREDENTIALS_MAX_GROUP, CREDENTIALS_MAX_GROUPS);
			return EXIT_USAGE;
		}
		o->groups = CHANGE_SET;
		o->groups_list = arg;
		return EXIT_OK;
	case OPT_TOTP:
		return set_change(&o->totp_change, CHANGE_SET, "--totp and --totp-remove") < 0
			       ? EXIT_USAGE
			       : EXIT_OK;
	case OPT_TOTP_SECRET: {
		int rc = totp_secret_decode(arg, strlen(arg), &o->totp, &err);

		/* Out of the process's command line at least from now on (ps
		 * shows /proc/PID/cmdline). */
		explicit_bzero(arg, strlen(arg));
		if (rc < 0) {
			msg_warn("--totp-secret: %s", err.msg);
			return EXIT_USAGE;
		}
		o->totp_import = true;
		return set_change(&o->totp_change, CHANGE_SET, "--totp-secret and --totp-remove") <
				       0
			       ? EXIT_USAGE
			       : EXIT_OK;
	}
	case OPT_TOTP_REMOVE:
		return set_change(&o->totp_change, CHANGE_REMOVE,
				  "--totp (or --totp-secret) and --totp-remove") < 0
			       ? EXIT_USAGE
			       : EXIT_OK;
	case OPT_TOTP_ALG:
		if (totp_alg_parse(arg, strlen(arg), &o->totp.alg) < 0) {
			msg_warn("--totp-algorithm: %s is not SHA1, SHA256 or SHA512", arg);
			return EXIT_USAGE;
		}
		return EXIT_OK;
	case OPT_TOTP_DIGITS:
		if (number_parse(arg, 6, 8, &o->totp.digits) < 0) {
			msg_warn("--totp-digits: %s is not 6, 7 or 8", arg);
			return EXIT_USAGE;
		}
		return EXIT_OK;
	case OPT_TOTP_PERIOD:
		if (number_parse(arg, CREDENTIALS_TOTP_PERIOD_MIN, CREDENTIALS_TOTP_PERIOD_MAX,
				 &o->totp.period) < 0) {
			msg_warn("--totp-period: %s is not %d to %d seconds", arg,
				 CREDENTIALS_TOTP_PERIOD_MIN, CREDENTIALS_TOTP_PERIOD_MAX);
			return EXIT_USAGE;
		}
		return EXIT_OK;
	case OPT_ISSUER:
		if (!issuer_ok(arg)) {
			msg_warn("--issuer: 1 to %d bytes without ':' or control characters",
				 ISSUER_MAX);
			return EXIT_USAGE;
		}
		o->issuer = arg;
		return EXIT_OK;
	}
	return EXIT_USAGE;
}

/* Returns EXIT_OK to go on, -1 after --help or --version, or the exit status
 * to stop with. */
static int options_parse(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"create", no_argument, NULL, 'c'},
		{"delete", no_argument, NULL, 'D'},
		{"verify", no_argument, NULL, 'v'},
		{"list", no_argument, NULL, 'l'},
		{"method", required_argument, NULL, 'm'},
		{"stdin", no_argument, NULL, OPT_STDIN},
		{"lock", no_argument, NULL, 'L'},
		{"unlock", no_argument, NULL, 'U'},
		{"expires", required_argument, NULL, OPT_EXPIRES},
		{"groups", required_argument, NULL, OPT_GROUPS},
		{"totp", no_argument, NULL, OPT_TOTP},
		{"totp-secret", required_argument, NULL, OPT_TOTP_SECRET},
		{"totp-remove", no_argument, NULL, OPT_TOTP_REMOVE},
		{"totp-algorithm", required_argument, NULL, OPT_TOTP_ALG},
		{"totp-digits", required_argument, NULL, OPT_TOTP_DIGITS},
		{"totp-period", required_argument, NULL, OPT_TOTP_PERIOD},
		{"issuer", required_argument, NULL, OPT_ISSUER},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *method = NULL;
	bool totp_settings = false, changes;
	int ch, want;

	o->mode = MODE_SET;
	o->method = &methods[0];
	o->issuer = ISSUER_DEFAULT;
	totp_params_default(&o->totp);
	while ((ch = getopt_long(argc, argv, "cDvlm:LUhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->create = true;
			break;
		case 'D':
			if (set_mode(o, MODE_DELETE) < 0)
				return EXIT_USAGE;
			break;
		case 'v':
			if (set_mode(o, MODE_VERIFY) < 0)
				return EXIT_USAGE;
			break;
		case 'l':
			if (set_mode(o, MODE_LIST) < 0)
				return EXIT_USAGE;
			break;
		case 'm':
			method = optarg;
			break;
		case OPT_STDIN:
			o->from_stdin = true;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf(PROG " %s\n", SOCKGATE_VERSION);
			return -1;
		case 'L':
		case 'U':
		case OPT_EXPIRES:
		case OPT_GROUPS:
		case OPT_TOTP:
		case OPT_TOTP_SECRET:
		case OPT_TOTP_REMOVE:
		case OPT_TOTP_ALG:
		case OPT_TOTP_DIGITS:
		case OPT_TOTP_PERIOD:
		case OPT_ISSUER:
			totp_settings |= ch == OPT_TOTP_ALG || ch == OPT_TOTP_DIGITS ||
					 ch == OPT_TOTP_PERIOD || ch == OPT_ISSUER;
			if (option_value(o, ch, optarg) != EXIT_OK)
				return EXIT_USAGE;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	changes = o->lock != CHANGE_KEEP || o->expires != CHANGE_KEEP || o->groups != CHANGE_KEEP ||
		  o->totp_change != CHANGE_KEEP;
	if (o->mode != MODE_SET && (o->create || method != NULL)) {
		msg_warn("-c and -m only apply when setting a password");
		return EXIT_USAGE;
	}
	if (o->from_stdin && o->mode != MODE_SET && o->mode != MODE_VERIFY) {
		msg_warn("--stdin only applies when setting or verifying a password");
		return EXIT_USAGE;
	}
	if (o->mode != MODE_SET && changes) {
		msg_warn("-L, -U, --expires, --groups and the --totp options change an entry; "
			 "they do not combine with -D, -v or -l");
		return EXIT_USAGE;
	}
	if (totp_settings && o->totp_change != CHANGE_SET) {
		msg_warn("--totp-algorithm, --totp-digits, --totp-period and --issuer only apply "
			 "with --totp or --totp-secret");
		return EXIT_USAGE;
	}
	/* A change alone keeps the password; -c (a new file needs one) or
	 * --stdin (one was given) sets it too, in the same write. */
	o->set_password = !changes || o->create || o->from_stdin;
	if (method != NULL && !o->set_password) {
		msg_warn("-m applies to a new password: add --stdin to set one along with "
			 "-L, -U, --expires, --groups or --totp");
		return EXIT_USAGE;
	}
	if (method != NULL) {
		o->method = NULL;
		for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
			if (strcmp(method, methods[i].name) == 0)
				o->method = &methods[i];
		if (o->method == NULL) {
			msg_warn("unknown method %s (use yescrypt, bcrypt or sha512)", method);
			return EXIT_USAGE;
		}
	}
	want = o->mode == MODE_LIST ? 1 : 2;
	if (argc - optind != want) {
		usage(stderr);
		return EXIT_USAGE;
	}
	o->file = argv[optind];
	o->user = want == 2 ? argv[optind + 1] : NULL;
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct options o = {0};
	struct errbuf err = {{0}};
	int rc;

	rc = options_parse(argc, argv, &o);
	if (rc < 0) {
		rc = EXIT_OK; /* --help or --version */
		goto out;
	}
	if (rc != EXIT_OK)
		goto out;
	if (o.user != NULL && !credentials_valid_user(o.user, &err)) {
		msg_warn("invalid user name: %s", err.msg);
		rc = EXIT_USAGE;
		goto out;
	}
	switch (o.mode) {
	case MODE_SET:
		rc = run_edit(&o, &err);
		break;
	case MODE_DELETE:
		rc = run_delete(&o, &err);
		break;
	case MODE_VERIFY:
		rc = run_verify(&o, &err);
		break;
	case MODE_LIST:
		rc = run_list(&o, &err);
		break;
	}
	if (rc < 0) {
		msg_warn("%s", err.msg);
		rc = EXIT_FAIL;
	} else if (fflush(stdout) != 0) {
		msg_warn("cannot write to standard output");
		rc = EXIT_FAIL;
	} else {
		rc = EXIT_OK;
	}

out:
	explicit_bzero(&o.totp, sizeof(o.totp));
	return rc;
}
