# Install rules: headers, the exported minnow::minnow target, a package config, a version file and minnow.pc.
include(CMakePackageConfigHelpers)

set(MINNOW_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/minnow")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(TARGETS minnow EXPORT minnowTargets)
install(EXPORT minnowTargets NAMESPACE minnow:: DESTINATION "${MINNOW_CMAKE_DIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/minnowConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/minnowConfig.cmake"
  INSTALL_DESTINATION "${MINNOW_CMAKE_DIR}")
# Header-only: one config serves every architecture.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/minnowConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/minnowConfig.cmake" "${PROJECT_BINARY_DIR}/minnowConfigVersion.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/minnowFindXsimd.cmake"
  DESTINATION "${MINNOW_CMAKE_DIR}")

set(MINNOW_PC_CFLAGS "")
set(MINNOW_PC_LIBS "")
if(MINNOW_HAS_OPENMP)
  set(MINNOW_PC_CFLAGS "${MINNOW_PC_CFLAGS} -fopenmp")
  set(MINNOW_PC_LIBS "${MINNOW_PC_LIBS} -fopenmp")
endif()
set(MINNOW_PC_REQUIRES "eigen3 >= 3.4, xsimd")
if(MINNOW_HAS_ZLIB)
  set(MINNOW_PC_CFLAGS "${MINNOW_PC_CFLAGS} -DMINNOW_HAS_ZLIB=1")
  set(MINNOW_PC_REQUIRES "${MINNOW_PC_REQUIRES}, zlib")
endif()
if(MINNOW_HAS_JSON)
  # Header-only, but its .pc gives the -I that finds it wherever it is installed.
  set(MINNOW_PC_CFLAGS "${MINNOW_PC_CFLAGS} -DMINNOW_HAS_JSON=1")
  set(MINNOW_PC_REQUIRES "${MINNOW_PC_REQUIRES}, nlohmann_json >= 3")
endif()
configure_file("${PROJECT_SOURCE_DIR}/cmake/minnow.pc.in" "${PROJECT_BINARY_DIR}/minnow.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/minnow.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
