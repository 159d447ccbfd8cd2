/* harness: what the integration tests share. Spawns the built programs with pipes, reads their
 * output, waits for them and cleans up, so that a failing test never leaves a process behind.
 * Every wait takes a timeout in milliseconds and is built on poll(); nothing sleeps to
 * synchronise. Descriptors it creates are close-on-exec. Not thread-safe. */
#ifndef SOCKGATE_HARNESS_H
#define SOCKGATE_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

/* Running the programs under a checker such as valgrind, from the environment (both unset by
 * default; ctest's *_valgrind tests set them):
 *
 *   SOCKGATE_TEST_WRAPPER  a command line put in front of every program of this tree that
 *                          harness_spawn() starts (argv[0] without '/'), never in front of a
 *                          system program (/usr/bin/telnet). Split on spaces, no quoting; a
 *                          first word without '/' is looked up in PATH. E.g. "valgrind --quiet
 *                          --error-exitcode=99 --leak-check=full ...": the program's exit code
 *                          then tells about memory errors, so a test must let our programs
 *                          exit by themselves or on SIGTERM and check the code; a SIGKILL'd
 *                          program (harness_cleanup()) reports nothing.
 *   SOCKGATE_TEST_SCALE    "small": heavy tests move fewer bytes and start fewer clients, and
 *                          waits last longer (harness_scale()). Set it with a slow wrapper.
 */

/* full, or small when SOCKGATE_TEST_SCALE is "small". For sizes and counts of load tests
 * (harness_scale(100 << 20, 4 << 20)) and for timeouts (where small is the larger one). */
long harness_scale(long full, long small);

/* The words of SOCKGATE_TEST_WRAPPER, NULL-terminated, the first one resolved to a path; NULL
 * when it is unset or empty. Parsed on the first call; static storage. */
const char *const *harness_wrapper(void);

/* Whether code, a program's exit code, is the wrapper's --error-exitcode=N: the checker found
 * errors in it (its report went to the program's stderr). 0 without a wrapper. */
int harness_wrapper_failed(int exit_code);

/* Milliseconds on CLOCK_MONOTONIC. */
long long harness_now_ms(void);

/* A generous default for one wait: sanitizer builds on a loaded machine are slow, valgrind
 * (SOCKGATE_TEST_SCALE=small) even more. Not a constant expression. */
#define HARNESS_TIMEOUT_MS ((int)harness_scale(15000, 60000))

enum harness_spawn_flags {
	HARNESS_STDIN_NULL = 1 << 0,  /* stdin from /dev/null instead of a pipe */
	HARNESS_STDOUT_NULL = 1 << 1, /* stdout to /dev/null: nothing to drain */
	HARNESS_STDERR_NULL = 1 << 2,
	/* stdin is a new pseudo-terminal (not the controlling one); in_fd is its master side:
	 * write to it to type, read from it to see the echo, tcgetattr() it for the modes. */
	HARNESS_STDIN_PTY = 1 << 3,
};

/* One spawned process. The pipe ends are non-blocking; -1 where there is none. The process is
 * the leader of its own process group, so harness_cleanup() also kills what it forked. */
struct harness_proc {
	pid_t pid;       /* 0 once cleaned up or if never spawned */
	int in_fd;       /* write end of the process's stdin (the pty master with a pty) */
	int out_fd;      /* read end of its stdout */
	int err_fd;      /* read end of its stderr */
	int exited;      /* set by harness_wait_exit() */
	int exit_code;   /* exit status, or -1 when a signal killed it */
	int term_signal; /* the signal that killed it, or 0 */
};

/* Starts argv[0] (a name without '/' means a program built in this tree, run under
 * SOCKGATE_TEST_WRAPPER if set, see above: pid is then the wrapper's, which valgrind shares
 * with the program) with argv. env lists "NAME=value" strings added to, or replacing, the
 * test's environment; NULL for none. The child gets default signal dispositions, an empty
 * signal mask, and SIGKILL when the test process dies. Returns 0, or -1 (also when exec
 * failed) with p left empty. */
int harness_spawn(struct harness_proc *p, const char *const argv[], const char *const env[],
		  unsigned flags);

/* The path of a program built in this tree (name: "sockgate"), for a command line that runs it
 * as an argument of a system program (prlimit, systemd-socket-activate). */
void harness_bin_path(const char *name, char *buf, size_t len);

/* Waits until p has exited and fills in exited, exit_code and term_signal. p stays a zombie
 * until harness_cleanup(), so its pid, and so its process group, cannot be reused meanwhile.
 * Returns 0, or -1 on timeout. */
int harness_wait_exit(struct harness_proc *p, int timeout_ms);

/* Copies what fd (a process's stderr, say) holds right now to the test's stderr between two
 * lines naming title, without waiting: after the process exited, all it wrote. fd must be
 * non-blocking, as harness_spawn() leaves its pipes; -1 is fine. */
void harness_dump_ready(int fd, const char *title);

/* Kills p's whole process group with SIGKILL, reaps p and closes its pipes. Safe to call more
 * than once, and on a struct that harness_spawn() failed to fill or a zeroed one. */
void harness_cleanup(struct harness_proc *p);

/* Reads fd line by line until a line contains needle, and copies that line without its newline
 * (cut to len - 1 bytes) into line, which may be NULL. Reads one byte at a time, so bytes after
 * the line stay in fd for the next call. Returns 0, or -1 on timeout, EOF or error. */
int harness_read_line(int fd, const char *needle, char *line, size_t len, int timeout_ms);

/* The port in a "... listening on ADDR:PORT" line, or -1. */
int harness_parse_port(const char *line);

/* Reads fd (a server's stderr) until a "listening on" line; returns its port, or -1. */
int harness_read_port(int fd, int timeout_ms);

/* Reads fd until EOF into buf. Returns the byte count, or -1 on timeout, error or when more
 * than cap bytes arrive. */
ssize_t harness_read_all(int fd, void *buf, size_t cap, int timeout_ms);

/* Reads what fd has within timeout_ms (at least one byte, at most cap). Returns the byte
 * count, 0 at EOF, or -1 on timeout or error. */
ssize_t harness_read_some(int fd, void *buf, size_t cap, int timeout_ms);

/* Reads exactly len bytes from fd into buf; for output that has no newline, like a prompt.
 * Returns 0, or -1 on timeout, EOF or error. */
int harness_read_exact(int fd, void *buf, size_t len, int timeout_ms);

/* Writes all of buf to fd (blocking or not). Returns 0, or -1 on timeout or error. */
int harness_write_all(int fd, const void *buf, size_t len, int timeout_ms);

/* On a connected socket: sends out while reading into in (so neither side can stall the other),
 * half-closes after the last byte and reads until EOF. Leaves fd non-blocking. Returns the
 * number of bytes received, or -1 on timeout, error or more than in_cap bytes. */
ssize_t harness_exchange(int fd, const void *out, size_t out_len, void *in, size_t in_cap,
			 int timeout_ms);

/* A blocking TCP connection to a numeric address (IPv4 or IPv6) and port. Returns fd or -1. */
int harness_connect(const char *ip, int port);
/* The same from the local address src (numeric; NULL: the kernel's choice), e.g. a loopback
 * address other than 127.0.0.1, so that the daemon sees another source. */
int harness_connect_from(const char *src, const char *ip, int port);
/* The n-th of many distinct loopback sources (127.1.0.1, 127.1.0.2, ...; never 127.0.0.1),
 * one per /32 and 250 per /24, for tests that play many hosts. */
void harness_loopback_source(unsigned n, char *buf, size_t len);

/* From /proc: the descriptors pid holds, and its CPU time (user + system) in
 * milliseconds; -1 if pid cannot be read. */
int harness_proc_fd_count(pid_t pid);
long long harness_proc_cpu_ms(pid_t pid);

/* A listening TCP socket on a numeric address and a free port, stored in *port. Returns fd or
 * -1. */
int harness_listen(const char *ip, int *port);

/* Accepts one connection on lfd within the timeout. Returns the (blocking) fd or -1. */
int harness_accept(int lfd, int timeout_ms);

/* A datagram socket to receive sd_notify() messages, bound to a fresh abstract address that is
 * written into path (len bytes) in NOTIFY_SOCKET form ("@..."). Returns fd or -1. */
int harness_notify_open(char *path, size_t len);

/* Waits for a notification containing the line assignment, e.g. "READY=1"; other messages are
 * skipped. Returns 0, or -1 on timeout or error. */
int harness_notify_wait(int fd, const char *assignment, int timeout_ms);

/* The number of processes whose parent is parent (only those in state Z if zombies_only),
 * read from /proc, or -1. */
int harness_count_children(pid_t parent, int zombies_only);

/* Waits until parent has no children (zombies_only: no zombie children). The kernel reports
 * no event for that, so this re-reads /proc every 10 ms up to the timeout. Returns 0, or -1
 * on timeout. */
int harness_wait_no_children(pid_t parent, int zombies_only, int timeout_ms);

#endif
