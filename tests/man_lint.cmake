# Runs `mandoc -Tlint -W warning` on every man/*.[1578] page and fails on any message. Cross
# references to pages not installed here are only STYLE messages, which -W warning omits.
# Usage: cmake -DMANDOC=/usr/bin/mandoc -DMAN_DIR=.../man -P man_lint.cmake
if(NOT MANDOC)
  message(FATAL_ERROR "mandoc not found: install it (Debian package mandoc) to lint the man pages")
endif()
file(GLOB pages "${MAN_DIR}/*.[1578]")
if(NOT pages)
  message(FATAL_ERROR "no man pages found in ${MAN_DIR}")
endif()
set(failed FALSE)
foreach(page IN LISTS pages)
  execute_process(COMMAND ${MANDOC} -Tlint -W warning ${page}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT "${out}${err}" STREQUAL "")
    message("${page}: mandoc exit ${rc}\n${out}${err}")
    set(failed TRUE)
  else()
    message(STATUS "${page}: clean")
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "man page lint failed")
endif()
