# CMake snippet for linking tether's C ABI.
#
# Either use an installed tether.pc (see tether.pc.in) through pkg-config:
#
#   find_package(PkgConfig REQUIRED)
#   pkg_check_modules(TETHER REQUIRED IMPORTED_TARGET tether)
#   target_link_libraries(app PRIVATE PkgConfig::TETHER)
#
# or include this file from a source checkout after `cargo build [--release] -p tether-ffi`:
#
#   set(TETHER_ROOT /path/to/tether)                       # the repository
#   set(TETHER_TARGET_DIR /var/tmp/tether-target)          # optional: CARGO_TARGET_DIR
#   set(TETHER_PROFILE release)                            # optional: debug (default) / release
#   include(${TETHER_ROOT}/bindings/c/tether.cmake)
#   target_link_libraries(app PRIVATE tether::tether)      # static, recommended before 1.0
#   # or tether::tether_shared for libtether.so
#
# C++ users also get bindings/cpp on the include path (tether.hpp, C++17).

if(NOT DEFINED TETHER_ROOT)
  get_filename_component(TETHER_ROOT "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
endif()
if(NOT DEFINED TETHER_TARGET_DIR)
  if(DEFINED ENV{CARGO_TARGET_DIR})
    set(TETHER_TARGET_DIR "$ENV{CARGO_TARGET_DIR}")
  else()
    set(TETHER_TARGET_DIR "${TETHER_ROOT}/target")
  endif()
endif()
if(NOT DEFINED TETHER_PROFILE)
  set(TETHER_PROFILE debug)
endif()

find_package(Threads REQUIRED)
set(_tether_lib_dir "${TETHER_TARGET_DIR}/${TETHER_PROFILE}")

if(NOT TARGET tether::tether)
  add_library(tether::tether STATIC IMPORTED)
  set_target_properties(tether::tether PROPERTIES
    IMPORTED_LOCATION "${_tether_lib_dir}/libtether.a"
    INTERFACE_INCLUDE_DIRECTORIES "${TETHER_ROOT}/include;${TETHER_ROOT}/bindings/cpp"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()

if(NOT TARGET tether::tether_shared)
  add_library(tether::tether_shared SHARED IMPORTED)
  set_target_properties(tether::tether_shared PROPERTIES
    IMPORTED_LOCATION "${_tether_lib_dir}/libtether.so"
    INTERFACE_INCLUDE_DIRECTORIES "${TETHER_ROOT}/include;${TETHER_ROOT}/bindings/cpp")
endif()
