# Fails when a short example is longer than MAX_LINES lines: the *.cpp files directly in EXAMPLES_DIR (the
# drivers in its drivers/ folder are exempt). Prints every file with its count.
#
#   cmake -DEXAMPLES_DIR=<dir> -DMAX_LINES=<n> -P cmake/check_example_length.cmake

cmake_minimum_required(VERSION 3.20)

if(NOT DEFINED EXAMPLES_DIR OR NOT MAX_LINES MATCHES "^[0-9]+$")
  message(FATAL_ERROR "usage: cmake -DEXAMPLES_DIR=<dir> -DMAX_LINES=<n> -P check_example_length.cmake")
endif()
file(GLOB sources "${EXAMPLES_DIR}/*.cpp")
list(SORT sources)
if(NOT sources)
  message(FATAL_ERROR "check_example_length: no *.cpp in EXAMPLES_DIR='${EXAMPLES_DIR}'")
endif()
set(too_long "")
foreach(source IN LISTS sources)
  # STRINGS drops empty lines unless told to keep them; count newlines instead.
  file(READ "${source}" text)
  string(REGEX REPLACE "[^\n]" "" newlines "${text}")
  string(LENGTH "${newlines}" lines)
  if(NOT text STREQUAL "" AND NOT text MATCHES "\n$")
    math(EXPR lines "${lines} + 1")  # a last line without its newline
  endif()
  get_filename_component(name "${source}" NAME)
  message("${name}: ${lines} lines")
  if(lines GREATER MAX_LINES)
    list(APPEND too_long "${name} (${lines})")
  endif()
endforeach()
if(too_long)
  list(JOIN too_long ", " too_long)
  message(FATAL_ERROR "longer than ${MAX_LINES} lines: ${too_long}")
endif()
