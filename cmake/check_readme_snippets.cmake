# Fails when a snippet of tests/snippets/*.cpp does not appear verbatim in README.md, so the README shows
# only code that compiles and passes its test.
#
#   cmake -DMINNOW_SOURCE_DIR=<tree> -P cmake/check_readme_snippets.cmake
#
# MINNOW_SOURCE_DIR defaults to the tree this script sits in. A snippet is the lines between a line
# `// snippet begin: NAME` and the next line `// snippet end`; the indentation of the begin marker is
# removed from every line (the README shows the code unindented). Each missing snippet is printed with
# its file and name; the script exits non-zero if any is missing, or if no snippet was found at all.

cmake_minimum_required(VERSION 3.20)

if(NOT DEFINED MINNOW_SOURCE_DIR)
  get_filename_component(MINNOW_SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
endif()
set(readme_path "${MINNOW_SOURCE_DIR}/README.md")
if(NOT EXISTS "${readme_path}")
  message(FATAL_ERROR "check_readme_snippets: no README.md in MINNOW_SOURCE_DIR='${MINNOW_SOURCE_DIR}'")
endif()
file(READ "${readme_path}" readme)

file(GLOB sources "${MINNOW_SOURCE_DIR}/tests/snippets/*.cpp")
list(SORT sources)
set(found 0)
set(missing 0)
foreach(source IN LISTS sources)
  # The text is handled as one string throughout: code holds ';', which would split a CMake list.
  file(READ "${source}" text)
  while(TRUE)
    string(REGEX MATCH "\n([ ]*)// snippet begin: ([A-Za-z0-9_]+)[ ]*\n" marker "${text}")
    if(NOT marker)
      break()
    endif()
    set(indent "${CMAKE_MATCH_1}")
    set(name "${CMAKE_MATCH_2}")
    math(EXPR found "${found} + 1")
    string(FIND "${text}" "${marker}" start)
    string(LENGTH "${marker}" marker_length)
    math(EXPR body_start "${start} + ${marker_length}")
    string(SUBSTRING "${text}" ${body_start} -1 text)
    string(FIND "${text}" "\n${indent}// snippet end\n" end)
    if(end EQUAL -1)
      message(SEND_ERROR "${source}: snippet '${name}' has no '// snippet end' line")
      math(EXPR missing "${missing} + 1")
      break()
    endif()
    math(EXPR body_length "${end} + 1")  # keep the body's last newline
    string(SUBSTRING "${text}" 0 ${body_length} body)
    string(SUBSTRING "${text}" ${end} -1 text)
    if(NOT indent STREQUAL "")
      # No "^" in the pattern: CMake's REGEX REPLACE matches "^" again where each search resumes.
      string(REGEX REPLACE "\n${indent}" "\n" body "\n${body}")
      string(SUBSTRING "${body}" 1 -1 body)
    endif()
    string(FIND "${readme}" "${body}" at)
    if(at EQUAL -1)
      message(SEND_ERROR "${source}: snippet '${name}' is not in README.md verbatim; the README should show:\n${body}")
      math(EXPR missing "${missing} + 1")
    endif()
  endwhile()
endforeach()

if(found EQUAL 0)
  message(FATAL_ERROR "check_readme_snippets: no snippet found in ${MINNOW_SOURCE_DIR}/tests/snippets/*.cpp")
endif()
if(missing GREATER 0)
  message(FATAL_ERROR "check_readme_snippets: ${missing} of ${found} snippets are missing from README.md")
endif()
message(STATUS "check_readme_snippets: all ${found} snippets appear in README.md")
