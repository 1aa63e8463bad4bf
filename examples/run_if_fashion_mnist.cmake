# Runs the command given after `--` when Fashion-MNIST is installed where data::default_fashion_mnist_dir() looks
# ($MINNOW_FASHION_MNIST_DIR if set and not empty, else /usr/share/datasets/fashion-mnist) and fails when it exits
# non-zero. Without the data it prints MINNOW_TEST_SKIPPED, which the test's SKIP_REGULAR_EXPRESSION reports as skipped.
#   cmake -P run_if_fashion_mnist.cmake -- <program> [arguments...]
include(${CMAKE_CURRENT_LIST_DIR}/command_after_dashes.cmake)
if(NOT command)
  message(FATAL_ERROR "usage: cmake -P run_if_fashion_mnist.cmake -- <program> [arguments...]")
endif()

set(dir "$ENV{MINNOW_FASHION_MNIST_DIR}")
if(dir STREQUAL "")
  set(dir "/usr/share/datasets/fashion-mnist")
endif()
if(NOT IS_DIRECTORY "${dir}")
  message("MINNOW_TEST_SKIPPED: Fashion-MNIST not found in ${dir} (apt-get install dataset-fashion-mnist)")
  return()
endif()
execute_process(COMMAND ${command} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "exited with ${result}")
endif()
