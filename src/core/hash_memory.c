/* hash_memory: keeps a password hash's working memory for the next hash on the
 * same thread (see hash_memory.h).
 *
 * It works by symbol interposition: a program's own mmap() and munmap() come
 * before libc's, so libcrypt's calls land here. Outside a hash, and for anything
 * but a large private anonymous read-write region that this thread mapped
 * during a hash, both pass straight to the next definition (libc's, or a
 * sanitizer's). On other systems than 64-bit Linux nothing is interposed and
 * the hash maps its memory every time, as it would anyway.
 *
 * libcrypt calls mmap, not mmap64: the definition must keep its name whatever
 * the build says about file offsets (off_t is 64 bits wide here anyway). */
#undef _FILE_OFFSET_BITS

#include "hash_memory.h"

#if defined(__linux__) && defined(__LP64__)

#include <dlfcn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef void *mmap_fn(void *, size_t, int, int, int, off_t);
typedef int munmap_fn(void *, size_t);

static __thread struct {
	bool in_hash;
	void *mapped; /* the region handed out during this hash */
	size_t mapped_len;
	void *kept; /* zeroed, mapped, waiting for the next hash */
	size_t kept_len;
} hm;

static unsigned long released; /* atomic: see hash_memory_released() */

/* The next mmap/munmap after ours, looked up on first use: a library's
 * constructor may map memory before main(). Should the lookup ever fail, the
 * system call itself does the job. */
static void *next_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn *next;
	mmap_fn *fn = __atomic_load_n(&next, __ATOMIC_ACQUIRE);

	if (fn == NULL) {
		fn = (mmap_fn *)dlsym(RTLD_NEXT, "mmap");
		if (fn == NULL)
			return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
		__atomic_store_n(&next, fn, __ATOMIC_RELEASE);
	}
	return fn(addr, len, prot, flags, fd, off);
}

static int next_munmap(void *addr, size_t len)
{
	static munmap_fn *next;
	munmap_fn *fn = __atomic_load_n(&next, __ATOMIC_ACQUIRE);

	if (fn == NULL) {
		fn = (munmap_fn *)dlsym(RTLD_NEXT, "munmap");
		if (fn == NULL)
			return (int)syscall(SYS_munmap, addr, len);
		__atomic_store_n(&next, fn, __ATOMIC_RELEASE);
	}
	return fn(addr, len);
}

/* Only plain working memory: no address wish, no file, no shared or huge
 * pages, no other flags. */
static bool is_working_memory(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return addr == NULL && fd == -1 && off == 0 && len >= HASH_MEMORY_MIN_BYTES &&
	       prot == (PROT_READ | PROT_WRITE) && flags == (MAP_PRIVATE | MAP_ANONYMOUS);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p;

	if (!hm.in_hash || hm.mapped != NULL || !is_working_memory(addr, len, prot, flags, fd, off))
		return next_mmap(addr, len, prot, flags, fd, off);
	if (hm.kept != NULL && hm.kept_len == len) {
		p = hm.kept;
		hm.kept = NULL;
	} else {
		hash_memory_release(); /* another cost: not the size we need */
		p = next_mmap(addr, len, prot, flags, fd, off);
		if (p == MAP_FAILED)
			return p;
	}
	hm.mapped = p;
	hm.mapped_len = len;
	return p;
}

int munmap(void *addr, size_t len)
{
	if (!hm.in_hash || addr == NULL || addr != hm.mapped || len != hm.mapped_len)
		return next_munmap(addr, len);
	/* Nothing derived from a password outlives its hash, and the next one
	 * gets memory as zero as a fresh mapping. */
	explicit_bzero(addr, len);
	hm.kept = addr;
	hm.kept_len = len;
	hm.mapped = NULL;
	return 0;
}

void hash_memory_begin(void)
{
	hm.in_hash = true;
}

void hash_memory_end(void)
{
	hm.in_hash = false;
	hm.mapped = NULL; /* a region the hash did not unmap is the hash's own */
}

bool hash_memory_holding(void)
{
	return hm.kept != NULL;
}

void hash_memory_release(void)
{
	if (hm.kept == NULL)
		return;
	(void)next_munmap(hm.kept, hm.kept_len);
	hm.kept = NULL;
	__atomic_add_fetch(&released, 1, __ATOMIC_RELAXED);
}

unsigned long hash_memory_released(void)
{
	return __atomic_load_n(&released, __ATOMIC_RELAXED);
}

#else

void hash_memory_begin(void)
{
}

void hash_memory_end(void)
{
}

bool hash_memory_holding(void)
{
	return false;
}

void hash_memory_release(void)
{
}

unsigned long hash_memory_released(void)
{
	return 0;
}

#endif
