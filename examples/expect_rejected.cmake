# Runs the command given after `--` and succeeds only when it exits non-zero within SECONDS seconds with
# output (stdout and stderr) matching the regular expression EXPECT: a bad option refused before any work.
#   cmake -DEXPECT=<regex> -DSECONDS=<n> -P expect_rejected.cmake -- <program> [arguments...]
# The command is killed at the time limit, so a check that runs only after training cannot keep the CPU.
include(${CMAKE_CURRENT_LIST_DIR}/command_after_dashes.cmake)
if(NOT command OR NOT DEFINED EXPECT OR NOT DEFINED SECONDS)
  message(FATAL_ERROR "usage: cmake -DEXPECT=<regex> -DSECONDS=<n> -P expect_rejected.cmake -- <program> [arguments...]")
endif()

execute_process(COMMAND ${command} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output TIMEOUT ${SECONDS})
message("${output}")
if(NOT result MATCHES "^[0-9]+$")
  message(FATAL_ERROR "did not exit by itself within ${SECONDS} s: ${result}")
elseif(result EQUAL 0)
  message(FATAL_ERROR "exited with 0: the option was accepted")
elseif(NOT output MATCHES "${EXPECT}")
  message(FATAL_ERROR "exited with ${result}, but the output does not match: ${EXPECT}")
endif()
