/* checker: child processes that compute crypt(3) for the password-check pool.
 *
 * Why processes: a thread can only yield to threads of its own scheduling
 * group. The kernel groups tasks by session (autogroup) or by cgroup, so a
 * daemon started by systemd, or with setsid, competes with its upstream and
 * its clients as one group: SCHED_IDLE check threads inside it still hold the
 * CPU for a whole time slice (milliseconds) whenever those wake up. A child in
 * a session of its own, at the lowest autogroup weight and SCHED_IDLE, gives
 * the CPU to every other process at once, so a login storm does not slow the
 * sessions already relaying.
 *
 * Each child serves one channel (a SOCK_SEQPACKET socket pair) and has nothing
 * else open. It dies with the daemon (PR_SET_PDEATHSIG) or when its channel
 * closes. The children are forked before the daemon starts any thread. */
#ifndef SOCKGATE_CHECKER_H
#define SOCKGATE_CHECKER_H

#include <crypt.h>
#include <sys/types.h>

#include "errbuf.h"

struct checker;

/* Forks n children (n >= 1). Call before any thread exists. */
struct checker *checker_spawn(unsigned n, struct errbuf *err);

/* Runs crypt(3) of data->input with setting on child i, leaving the result
 * (or crypt's failure token) in data->output. Returns 0, or -1 with errno set
 * if the child is gone. Only one thread may use a given i. */
int checker_crypt(struct checker *c, unsigned i, const char *setting, struct crypt_data *data);

/* Child i's process ID (for tests and status). */
pid_t checker_pid(const struct checker *c, unsigned i);

/* Closes the channels and waits for the children to exit. */
void checker_free(struct checker *c);

#endif
