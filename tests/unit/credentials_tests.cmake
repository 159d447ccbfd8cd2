# Unit tests for core/credentials.c; included from tests/CMakeLists.txt. Real
# hashes (yescrypt, scrypt) and a 100k-user parse are slow under the sanitizers.
sockgate_add_test(test_credentials ${CMAKE_CURRENT_LIST_DIR}/test_credentials.c 120)
