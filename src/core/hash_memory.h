/* hash_memory: keeps a password hash's working memory for the next hash on the
 * same thread.
 *
 * libxcrypt's yescrypt (and scrypt) maps its working memory for every hash and
 * unmaps it after: 16 MiB at sockgate-passwd's default cost, which the hash then
 * faults in page by page. The faults are a third of a check's CPU (bench/CHANGES.md),
 * and libxcrypt has no call that keeps the memory. So between hash_memory_begin()
 * and hash_memory_end() this module serves the thread's mmap()/munmap() calls
 * (it defines both; every other call passes through): a large private anonymous
 * region that the hash maps and unmaps is zeroed and kept, and the next hash of
 * the same size gets it back, already faulted in and as zero as a fresh mapping.
 * A thread keeps at most one region, and gives it back with
 * hash_memory_release() before it waits for work. */
#ifndef SOCKGATE_HASH_MEMORY_H
#define SOCKGATE_HASH_MEMORY_H

#include <stdbool.h>
#include <stddef.h>

/* Regions smaller than this are not kept (bcrypt and SHA-crypt map none). */
#define HASH_MEMORY_MIN_BYTES ((size_t)1 << 20)

/* Around one crypt_r() call on this thread. */
void hash_memory_begin(void);
void hash_memory_end(void);

/* Whether this thread keeps a region; and giving it back (unmapping it). */
bool hash_memory_holding(void);
void hash_memory_release(void);

/* How many kept regions were given back so far, over all threads. */
unsigned long hash_memory_released(void);

#endif
