/* sockgate-passwd: creates and edits sockgate credentials files ("user:hash"
 * lines), in the manner of htpasswd. Every change replaces the whole file
 * atomically and keeps all other lines byte for byte; parsing and checking
 * passwords is left to the core credentials module. */
#include "credentials.h"

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
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define PROG "sockgate-passwd"

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

struct options {
	enum mode mode;
	bool create;
	bool from_stdin;
	const struct method *method;
	const char *file;
	const char *user;
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
		"usage: " PROG " [-c] [--stdin] [-m METHOD] FILE USER   set USER's password\n"
		"       " PROG " -D FILE USER                           delete USER\n"
		"       " PROG " -v [--stdin] FILE USER                 check USER's password\n"
		"       " PROG " -l FILE                                list user names\n"
		"\n"
		"  -c, --create      create FILE (mode 0600); refuses an existing file\n"
		"  -m, --method M    yescrypt (default), bcrypt or sha512\n"
		"      --stdin       read the password from one line of standard input\n"
		"  -D, --delete      delete USER\n"
		"  -v, --verify      exit 0 if the password is USER's, 1 if not\n"
		"  -l, --list        print the user names, one per line\n"
		"  -h, --help        show this help\n"
		"  -V, --version     show the version\n");
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

static int run_set(const struct options *o, struct errbuf *err)
{
	struct file_data f = {.lock_fd = -1};
	struct buffer entry = {0}, out = {0};
	struct password pw;
	struct stat st;
	int found = 0, rc = -1;

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
	if (password_get(o, &pw, err) < 0)
		goto out;
	if (o->create) {
		f.st.st_mode = S_IFREG | 0600;
		f.st.st_uid = geteuid();
		f.st.st_gid = getegid();
	} else if (file_read(o->file, true, &f, err) < 0) {
		goto out;
	}
	if (buffer_add(&entry, o->user, strlen(o->user)) < 0 || buffer_add(&entry, ":", 1) < 0) {
		errbuf_errno(err, ENOMEM, "%s", o->file);
		goto out;
	}
	if (hash_make(o->method->prefix, &pw, &entry, err) < 0)
		goto out;
	found = text_edit(&f, o->file, o->user, &entry, &out);
	if (found < 0) {
		errbuf_errno(err, ENOMEM, "%s", o->file);
		goto out;
	}
	if (file_replace(f.path != NULL ? f.path : o->file, &out, f.st.st_mode, f.st.st_uid,
			 f.st.st_gid, o->create, err) < 0)
		goto out;
	printf("%s password for %s in %s\n", found > 0 ? "Updated" : "Added", o->user, o->file);
	text_check(o->file, out.p, out.len, f.st.st_mode);
	rc = 0;

out:
	explicit_bzero(&pw, sizeof(pw));
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

static int run_verify(const struct options *o, struct errbuf *err)
{
	struct credentials *c;
	struct password pw;
	int rc = -1;

	memset(&pw, 0, sizeof(pw));
	c = file_parse(o->file, err);
	if (c == NULL)
		return -1;
	/* This tool may say which names exist: its user can read the file. */
	if (!credentials_has_user(c, o->user)) {
		errbuf_set(err, "%s: no user %s", o->file, o->user);
		goto out;
	}
	if (password_get(o, &pw, err) < 0)
		goto out;
	switch (credentials_verify(c, o->user, pw.s)) {
	case CREDENTIALS_OK:
		printf("Password for %s is correct\n", o->user);
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

static int run_list(const struct options *o, struct errbuf *err)
{
	struct file_data f = {.lock_fd = -1};
	struct credentials *c = NULL;
	size_t pos = 0;
	int rc = -1;

	if (file_read(o->file, false, &f, err) < 0)
		goto out;
	/* Parse first: only a file sockgate would load is listed. */
	c = credentials_parse(o->file, f.text, f.len, err);
	if (c == NULL)
		goto out;
	/* The parser accepted every line, so each one that is not blank or a
	 * comment is "user:hash"; print in file order. */
	while (pos < f.len) {
		const char *line = f.text + pos;
		const char *nl = memchr(line, '\n', f.len - pos);
		size_t len = nl != NULL ? (size_t)(nl - line) : f.len - pos;
		const char *colon = memchr(line, ':', len);
		size_t i = strspn(line, " \t");

		pos += len + 1;
		if (colon != NULL && i < len && line[i] != '#')
			printf("%.*s\n", (int)(colon - line), line);
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
		{"stdin", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *method = NULL;
	int ch, want;

	o->mode = MODE_SET;
	o->method = &methods[0];
	while ((ch = getopt_long(argc, argv, "cDvlm:hV", longopts, NULL)) != -1) {
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
		case 'S':
			o->from_stdin = true;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf(PROG " %s\n", SOCKGATE_VERSION);
			return -1;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (o->mode != MODE_SET && (o->create || method != NULL)) {
		msg_warn("-c and -m only apply when setting a password");
		return EXIT_USAGE;
	}
	if (o->from_stdin && o->mode != MODE_SET && o->mode != MODE_VERIFY) {
		msg_warn("--stdin only applies when setting or verifying a password");
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
	if (rc < 0)
		return EXIT_OK; /* --help or --version */
	if (rc != EXIT_OK)
		return rc;
	if (o.user != NULL && !credentials_valid_user(o.user, &err)) {
		msg_warn("invalid user name: %s", err.msg);
		return EXIT_USAGE;
	}
	switch (o.mode) {
	case MODE_SET:
		rc = run_set(&o, &err);
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
		return EXIT_FAIL;
	}
	if (fflush(stdout) != 0) {
		msg_warn("cannot write to standard output");
		return EXIT_FAIL;
	}
	return EXIT_OK;
}
