/* test_hash_memory: a password hash's working memory is kept for the next hash
 * on the same thread, zeroed, and only that: everything else mmap() and
 * munmap() are asked passes through. The first test runs libxcrypt's real
 * yescrypt, so it also fails if libxcrypt ever maps its memory differently. */
#include <crypt.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "testmain.h"

#include "hash_memory.h"

#define REGION  (2 * HASH_MEMORY_MIN_BYTES)
#define WORKING (PROT_READ | PROT_WRITE), (MAP_PRIVATE | MAP_ANONYMOUS), -1, 0

/* sockgate-passwd's default: yescrypt, 16 MiB of working memory. */
static const char yescrypt_setting[] = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$";

static long thread_minor_faults(void)
{
	struct rusage ru;

	assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
	return ru.ru_minflt;
}

static bool is_mapped(void *p)
{
	unsigned char vec[1];

	if (mincore(p, (size_t)sysconf(_SC_PAGESIZE), vec) == 0)
		return true;
	assert_int_equal(errno, ENOMEM);
	return false;
}

/* One hash, counting the page faults it takes. */
static long hash(struct crypt_data *cd, char *out, size_t out_size)
{
	long before = thread_minor_faults();

	hash_memory_begin();
	assert_non_null(crypt_r("correct horse", yescrypt_setting, cd));
	hash_memory_end();
	snprintf(out, out_size, "%s", cd->output);
	return thread_minor_faults() - before;
}

static void a_second_hash_reuses_the_memory_of_the_first(void **state)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char plain[CRYPT_OUTPUT_SIZE], first[CRYPT_OUTPUT_SIZE], second[CRYPT_OUTPUT_SIZE];
	long faults_first, faults_second;
	size_t pages = (16u << 20) / (size_t)sysconf(_SC_PAGESIZE);

	(void)state;
	assert_non_null(cd);
	/* Outside begin/end: crypt(3) as it is, the reference result. */
	assert_non_null(crypt_r("correct horse", yescrypt_setting, cd));
	snprintf(plain, sizeof(plain), "%s", cd->output);
	assert_false(hash_memory_holding());

	faults_first = hash(cd, first, sizeof(first));
	assert_true(hash_memory_holding());
	faults_second = hash(cd, second, sizeof(second));
	/* The first hash faults its 16 MiB in, the second finds it there. */
	assert_true(faults_first >= (long)pages);
	assert_true(faults_second < (long)pages / 16);
	/* And the memory, reused, changes nothing in the result. */
	assert_string_equal(first, plain);
	assert_string_equal(second, plain);
	hash_memory_release();
	assert_false(hash_memory_holding());
	free(cd);
}

static void kept_memory_is_zeroed_and_given_back(void **state)
{
	unsigned char *p, *q;

	(void)state;
	hash_memory_begin();
	p = mmap(NULL, REGION, WORKING);
	assert_ptr_not_equal(p, MAP_FAILED);
	memset(p, 0xa5, REGION);
	assert_int_equal(munmap(p, REGION), 0);
	assert_true(hash_memory_holding());
	assert_true(is_mapped(p));
	q = mmap(NULL, REGION, WORKING);
	assert_ptr_equal(q, p);
	assert_false(hash_memory_holding());
	for (size_t i = 0; i < REGION; i++)
		if (q[i] != 0)
			fail_msg("byte %zu of the kept region is %#x, not 0", i, q[i]);
	assert_int_equal(munmap(q, REGION), 0);
	hash_memory_end();

	assert_true(hash_memory_holding());
	hash_memory_release();
	assert_false(hash_memory_holding());
	assert_false(is_mapped(p));
}

/* munmap() that this module must really do, whatever the state. */
static void assert_unmapped_for_real(void *p, size_t len)
{
	assert_int_equal(munmap(p, len), 0);
	assert_false(is_mapped(p));
	assert_false(hash_memory_holding());
}

static void only_a_hash_s_working_memory_is_kept(void **state)
{
	void *before, *p;

	(void)state;
	/* Outside a hash. */
	p = mmap(NULL, REGION, WORKING);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_unmapped_for_real(p, REGION);

	/* Mapped before the hash began: not the hash's. */
	before = mmap(NULL, REGION, WORKING);
	assert_ptr_not_equal(before, MAP_FAILED);
	hash_memory_begin();
	assert_unmapped_for_real(before, REGION);

	/* Too small, shared, or with an address wish. */
	p = mmap(NULL, HASH_MEMORY_MIN_BYTES / 2, WORKING);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_unmapped_for_real(p, HASH_MEMORY_MIN_BYTES / 2);
	p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_unmapped_for_real(p, REGION);
	p = mmap(NULL, REGION, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_unmapped_for_real(p, REGION);

	/* The hash's region, but unmapped in part. */
	p = mmap(NULL, REGION, WORKING);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal(munmap(p, REGION / 2), 0);
	assert_false(is_mapped(p));
	assert_false(hash_memory_holding());
	hash_memory_end();
	assert_unmapped_for_real((char *)p + REGION / 2, REGION / 2);
}

static void a_hash_of_another_size_maps_afresh(void **state)
{
	unsigned char *p;

	(void)state;
	hash_memory_begin();
	p = mmap(NULL, REGION, WORKING);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_int_equal(munmap(p, REGION), 0);
	hash_memory_end();
	assert_true(hash_memory_holding());

	/* The kept region is given back, a new one mapped and kept after. */
	hash_memory_begin();
	p = mmap(NULL, 2 * REGION, WORKING);
	assert_ptr_not_equal(p, MAP_FAILED);
	assert_false(hash_memory_holding());
	p[2 * REGION - 1] = 1;
	assert_int_equal(munmap(p, 2 * REGION), 0);
	hash_memory_end();
	assert_true(hash_memory_holding());
	hash_memory_release();
	assert_false(is_mapped(p));
}

/* A failed assertion may leave the thread inside a hash. */
static int teardown(void **state)
{
	(void)state;
	hash_memory_end();
	hash_memory_release();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(a_second_hash_reuses_the_memory_of_the_first, teardown),
		cmocka_unit_test_teardown(kept_memory_is_zeroed_and_given_back, teardown),
		cmocka_unit_test_teardown(only_a_hash_s_working_memory_is_kept, teardown),
		cmocka_unit_test_teardown(a_hash_of_another_size_maps_afresh, teardown),
	};

	/* Page faults count pages: no transparent huge pages (THP "always"). */
	(void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	return test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
