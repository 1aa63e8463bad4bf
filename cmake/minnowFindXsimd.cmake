# Finds xsimd. Debian's xsimd 8.1 package exports `INTERFACE_LINK_LIBRARIES xtl` without finding xtl,
# so every consumer fails to link with "-lxtl not found". xsimd needs xtl only for xtl::xcomplex, which
# minnow does not use: when no `xtl` target exists, the dangling link is dropped.
if(NOT TARGET xsimd)
  find_package(xsimd 8 REQUIRED)
endif()
if(NOT TARGET xtl)
  get_target_property(_minnow_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
  if(_minnow_xsimd_links)
    list(REMOVE_ITEM _minnow_xsimd_links xtl)
    set_target_properties(xsimd PROPERTIES INTERFACE_LINK_LIBRARIES "${_minnow_xsimd_links}")
  endif()
  unset(_minnow_xsimd_links)
endif()
