# Fails when README.md, docs/*.md or a header under include/ refers to how the work was organised
# (work items, issues, sessions, commits) instead of describing the product.
#
#   cmake -DMINNOW_SOURCE_DIR=<tree> -P cmake/check_product_docs.cmake
#
# MINNOW_SOURCE_DIR defaults to the tree this script sits in, so a scratch copy can be checked too.
# Each offending line is printed as file:line: text; the script exits non-zero if there is any.
# Matching is case-insensitive. CMake's regular expressions have no \b, so a word boundary is
# spelled as "start of line or a character that cannot be part of the word".

cmake_minimum_required(VERSION 3.20)

if(NOT DEFINED MINNOW_SOURCE_DIR)
  get_filename_component(MINNOW_SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
endif()
if(NOT EXISTS "${MINNOW_SOURCE_DIR}/README.md")
  message(FATAL_ERROR "check_product_docs: no README.md in MINNOW_SOURCE_DIR='${MINNOW_SOURCE_DIR}'")
endif()

set(before "(^|[^a-z0-9_])")
set(before_hash "(^|[^a-z0-9_.])")  # "1.44269504e-4f" is a float, not a hash
set(after "([^a-z0-9_]|$)")
set(hex "[0-9a-f]")
set(hex7 "${hex}${hex}${hex}${hex}${hex}${hex}${hex}")
# Each pattern runs on the lower-cased line.
set(patterns
  "${before}issues?${after}"          # a work item ("the pruning issue"); reword English "issue" too
  "${before}sessions?${after}"
  "${before}work[ -]items?${after}"
  "${before}commit ${hex7}"
  "${before_hash}${hex7}${hex}*${after}")  # a bare hash: 7+ hex digits, see is_hash below

file(GLOB docs "${MINNOW_SOURCE_DIR}/docs/*.md")
file(GLOB_RECURSE headers "${MINNOW_SOURCE_DIR}/include/*.hpp" "${MINNOW_SOURCE_DIR}/include/*.h")
set(files "${MINNOW_SOURCE_DIR}/README.md" ${docs} ${headers})
list(SORT files)

# A run of hex digits counts as a hash only if it holds both a digit and a letter: 6357506 is a
# parameter count and "defaced" a word, 1227963a or a3f09c1 are hashes.
function(is_hash text result)
  set(${result} FALSE PARENT_SCOPE)
  string(REGEX MATCHALL "${before_hash}${hex7}${hex}*${after}" runs "${text}")
  foreach(run IN LISTS runs)
    string(REGEX MATCH "${hex7}${hex}*" digits "${run}")
    if(digits MATCHES "[0-9]" AND digits MATCHES "[a-f]")
      set(${result} TRUE PARENT_SCOPE)
    endif()
  endforeach()
endfunction()

function(line_offends text result)
  set(${result} FALSE PARENT_SCOPE)
  list(LENGTH patterns count)
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    list(GET patterns ${i} pattern)
    if(text MATCHES "${pattern}")
      if(i EQUAL last)
        is_hash("${text}" hash)
        if(NOT hash)
          continue()
        endif()
      endif()
      set(${result} TRUE PARENT_SCOPE)
      return()
    endif()
  endforeach()
endfunction()

set(hits 0)
foreach(file IN LISTS files)
  file(READ "${file}" content)
  string(TOLOWER "${content}" lower)
  # Cheap test of the whole file first; most files have no hit.
  set(suspect FALSE)
  foreach(pattern IN LISTS patterns)
    if(lower MATCHES "${pattern}")
      set(suspect TRUE)
      break()
    endif()
  endforeach()
  if(NOT suspect)
    continue()
  endif()
  # Split into lines without letting ';', '\' (it escapes the next ';') or '[' ']' change the list.
  foreach(text IN ITEMS content lower)
    string(REPLACE "\\" "<backslash>" ${text} "${${text}}")
    string(REPLACE ";" "<semicolon>" ${text} "${${text}}")
    string(REPLACE "[" "<open>" ${text} "${${text}}")
    string(REPLACE "]" "<close>" ${text} "${${text}}")
    string(REPLACE "\n" ";" ${text} "${${text}}")
  endforeach()
  file(RELATIVE_PATH shown "${MINNOW_SOURCE_DIR}" "${file}")
  set(number 0)
  foreach(line IN LISTS lower)
    list(GET content ${number} original)
    math(EXPR number "${number} + 1")
    string(REPLACE "<open>" "[" line "${line}")
    string(REPLACE "<close>" "]" line "${line}")
    string(REPLACE "<semicolon>" ";" line "${line}")
    string(REPLACE "<backslash>" "\\" line "${line}")
    line_offends("${line}" bad)
    if(bad)
      string(REPLACE "<open>" "[" original "${original}")
      string(REPLACE "<close>" "]" original "${original}")
      string(REPLACE "<semicolon>" ";" original "${original}")
      string(REPLACE "<backslash>" "\\" original "${original}")
      string(STRIP "${original}" original)
      message("${shown}:${number}: ${original}")
      math(EXPR hits "${hits} + 1")
    endif()
  endforeach()
endforeach()

list(LENGTH files checked)
if(hits GREATER 0)
  message(FATAL_ERROR "${hits} line(s) in README.md, docs/ or include/ refer to work items, sessions or "
    "commits; describe the product instead (history belongs in docs/experiments.md, in neutral words).")
endif()
message(STATUS "check_product_docs: ${checked} files describe the product only")
