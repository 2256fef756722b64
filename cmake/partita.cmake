# The project's one helper for libraries and tests.
#
#   partita_add_library(<name> [TORCH] DEPS <libs...>)
#     builds libs/<name>/src/*.cpp into partita_<name> (alias partita::<name>), public headers in include/,
#     and one GoogleTest executable per libs/<name>/tests/*_test.cpp, registered with ctest (label <name>).
#     TORCH links LibTorch and gives the target a precompiled header of the torch includes.

set(PARTITA_WARNINGS -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wpedantic)

function(partita_target_defaults target)
  target_compile_options(${target} PRIVATE ${PARTITA_WARNINGS})
  if(PARTITA_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(PARTITA_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${PARTITA_SANITIZE} -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=${PARTITA_SANITIZE})
  endif()
endfunction()

function(partita_add_library name)
  cmake_parse_arguments(ARG "TORCH" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp)
  add_library(partita_${name} STATIC ${srcs})
  add_library(partita::${name} ALIAS partita_${name})
  target_include_directories(partita_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(partita_${name} PUBLIC ${ARG_DEPS})
  partita_target_defaults(partita_${name})
  if(ARG_TORCH)
    target_link_libraries(partita_${name} PUBLIC torch)
    target_compile_definitions(partita_${name} PUBLIC USE_C10D_GLOO)
    target_precompile_headers(partita_${name} PRIVATE <torch/script.h>)
  endif()
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/tests/*_test.cpp)
  foreach(test_src ${tests})
    get_filename_component(test_name ${test_src} NAME_WE)
    set(exe ${name}_${test_name})
    add_executable(${exe} ${test_src})
    target_link_libraries(${exe} PRIVATE partita_${name} GTest::gtest GTest::gtest_main)
    target_compile_definitions(${exe} PRIVATE PARTITA_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                              PARTITA_MODELS_DIR="${PROJECT_BINARY_DIR}/models")
    partita_target_defaults(${exe})
    if(ARG_TORCH)
      target_precompile_headers(${exe} REUSE_FROM partita_${name})
    endif()
    add_test(NAME ${name}.${test_name} COMMAND ${exe})
    set_tests_properties(${name}.${test_name} PROPERTIES LABELS ${name} TIMEOUT ${PARTITA_TEST_TIMEOUT})
  endforeach()
endfunction()
