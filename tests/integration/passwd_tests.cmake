# Integration tests for sockgate-passwd, which run the built program on real
# files; included from tests/CMakeLists.txt.
sockgate_add_test(test_passwd ${CMAKE_CURRENT_LIST_DIR}/test_passwd.c 180
  DEPENDS sockgate-passwd)
target_compile_definitions(test_passwd PRIVATE
  SOCKGATE_BIN_DIR="$<TARGET_FILE_DIR:sockgate-passwd>")
