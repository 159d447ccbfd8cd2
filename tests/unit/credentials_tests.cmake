# Unit tests for core/credentials.c; included from tests/CMakeLists.txt. Real
# hashes (yescrypt, scrypt) and a 100k-user parse are slow under the sanitizers.
sockgate_add_test(test_credentials ${CMAKE_CURRENT_LIST_DIR}/test_credentials.c 120)
# The test sees which setting each check hashes with (it still hashes).
target_link_options(test_credentials PRIVATE -Wl,--wrap=crypt_r)
