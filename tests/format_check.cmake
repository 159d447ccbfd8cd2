# Fails when a C source of the tree differs from what `clang-format` (with the
# checked-in .clang-format) makes of it, naming the files. Run by ctest as
# `format`; fix with `clang-format -i FILE`. Reported as skipped (ctest matches
# "SKIP: ") when clang-format is not installed; scripts/deps installs it.
# -DCLANG_FORMAT=... -DROOT=... -P format_check.cmake
if(NOT CLANG_FORMAT)
  message("SKIP: clang-format not found")
  return()
endif()
file(GLOB_RECURSE sources RELATIVE ${ROOT}
  ${ROOT}/src/*.c ${ROOT}/src/*.h ${ROOT}/tests/*.c ${ROOT}/tests/*.h
  ${ROOT}/bench/*.c ${ROOT}/bench/*.h)
set(bad "")
foreach(f ${sources})
  execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${ROOT}/${f}
    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT rc EQUAL 0)
    list(APPEND bad ${f})
  endif()
endforeach()
list(LENGTH sources n)
if(bad)
  string(REPLACE ";" "\n  " list "${bad}")
  message(FATAL_ERROR "not formatted (clang-format -i FILE):\n  ${list}")
endif()
message("${n} files formatted")
