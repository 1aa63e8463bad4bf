# Fails when an example calls into a `detail::` namespace (minnow's or a module's internals, or an example's
# own): the examples show how a user's program is written, so they use public names only.
#
#   cmake [-DEXAMPLES_DIR=<dir>] -P cmake/check_examples_public_api.cmake
#
# EXAMPLES_DIR defaults to examples/ of the tree this script sits in; its *.cpp and *.hpp files and those of its
# drivers/ folder are read.
# A line counts when `detail::` appears in its code (text after `//` is a comment and is ignored). Each such
# line is printed as file:line; the script exits non-zero if there is any, or if no file was found at all.

cmake_minimum_required(VERSION 3.20)

if(NOT DEFINED EXAMPLES_DIR)
  get_filename_component(EXAMPLES_DIR "${CMAKE_CURRENT_LIST_DIR}/../examples" ABSOLUTE)
endif()
file(GLOB sources "${EXAMPLES_DIR}/*.cpp" "${EXAMPLES_DIR}/*.hpp" "${EXAMPLES_DIR}/drivers/*.cpp" "${EXAMPLES_DIR}/drivers/*.hpp")
list(SORT sources)
if(NOT sources)
  message(FATAL_ERROR "check_examples_public_api: no *.cpp or *.hpp in EXAMPLES_DIR='${EXAMPLES_DIR}'")
endif()

set(calls 0)
foreach(source IN LISTS sources)
  # The text is handled as one string, line by line: code holds ';' and '[', which would split a CMake list.
  file(READ "${source}" text)
  string(FIND "${text}" "detail::" any)
  if(any EQUAL -1)
    continue()
  endif()
  set(number 0)
  while(NOT text STREQUAL "")
    math(EXPR number "${number} + 1")
    string(FIND "${text}" "\n" newline)
    if(newline EQUAL -1)
      set(line "${text}")
      set(text "")
    else()
      string(SUBSTRING "${text}" 0 ${newline} line)
      math(EXPR rest "${newline} + 1")
      string(SUBSTRING "${text}" ${rest} -1 text)
    endif()
    string(FIND "${line}" "//" comment)
    if(comment EQUAL -1)
      set(code "${line}")
    else()
      string(SUBSTRING "${line}" 0 ${comment} code)
    endif()
    string(FIND "${code}" "detail::" at)
    if(NOT at EQUAL -1)
      string(STRIP "${line}" shown)
      message("${source}:${number}: ${shown}")
      math(EXPR calls "${calls} + 1")
    endif()
  endwhile()
endforeach()

if(calls GREATER 0)
  message(FATAL_ERROR "check_examples_public_api: ${calls} line(s) of the examples use a detail:: name; call a public "
                      "function instead (or, for string formatting, example::concat in examples/cli.hpp)")
endif()
list(LENGTH sources count)
message(STATUS "check_examples_public_api: ${count} files, no detail:: calls")
