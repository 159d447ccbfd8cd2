# Unit tests of the configuration loader (src/core/config.c). Included from
# tests/CMakeLists.txt; kept apart so each module owns its own registration.
add_executable(test_config ${CMAKE_CURRENT_LIST_DIR}/test_config.c)
target_link_libraries(test_config PRIVATE sockgate_core PkgConfig::CMOCKA)
# The shipped example is loaded as part of the test, so it cannot rot.
target_compile_definitions(test_config PRIVATE
  SOCKGATE_EXAMPLE_CONF="${PROJECT_SOURCE_DIR}/etc/sockgate.conf")
# Lets the test make any allocation of the loader fail (test_out_of_memory).
target_link_options(test_config PRIVATE
  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup)
add_test(NAME test_config COMMAND test_config)
set_tests_properties(test_config PROPERTIES TIMEOUT 60)
