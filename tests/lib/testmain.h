/* testmain: how a cmocka test binary ends. A failure fails it; otherwise, if any
 * of its tests skipped (test_skip()), it exits 77, which ctest shows as
 * skipped (every test is registered with SKIP_RETURN_CODE 77), so a skip never
 * reads as a pass. Header-only: include after <cmocka.h>, once per binary. */
#ifndef SOCKGATE_TESTMAIN_H
#define SOCKGATE_TESTMAIN_H

#define TEST_EXIT_SKIPPED 77

static unsigned test_skips;

/* Skips the running test, saying why on the test's output. */
#define test_skip(...)                                                                             \
	do {                                                                                       \
		test_skips++;                                                                      \
		print_message("skipped: " __VA_ARGS__);                                            \
		print_message("\n");                                                               \
		skip();                                                                            \
	} while (0)

/* return test_exit(cmocka_run_group_tests(...)); */
static inline int test_exit(int failures)
{
	if (failures != 0)
		return failures;
	return test_skips != 0 ? TEST_EXIT_SKIPPED : 0;
}

#endif
