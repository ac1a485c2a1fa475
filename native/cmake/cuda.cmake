# CUDA detection. Sets QWEN3VL_WITH_CUDA, QWEN3VL_CUDA_ARCHITECTURES (CMake syntax), QWEN3VL_CUDA_ARCHS_TEXT
# (for the build report) and QWEN3VL_CUDA_SUMMARY.
#
# Default architectures: those the found toolkit supports among 61;70;75;80;86;89;90, as SASS, plus PTX for the
# newest so later GPUs can JIT. Override with -DCMAKE_CUDA_ARCHITECTURES=... as usual.
#
# nvcc 11.x rejects g++ >= 12 as host compiler: when no host compiler is given and the C++ compiler is such a
# g++, a supported one (clang++-14, g++-11, clang++-13, clang++-12) is chosen automatically.

set(QWEN3VL_WITH_CUDA OFF)
set(QWEN3VL_CUDA_SUMMARY "off (QWEN3VL_CUDA=${QWEN3VL_CUDA})")
set(QWEN3VL_CUDA_ARCHS_TEXT "")

if(NOT QWEN3VL_CUDA STREQUAL "OFF")
  find_program(QWEN3VL_NVCC NAMES nvcc HINTS ENV CUDA_PATH PATH_SUFFIXES bin)
  if(NOT CMAKE_CUDA_COMPILER AND QWEN3VL_NVCC)
    set(CMAKE_CUDA_COMPILER "${QWEN3VL_NVCC}")
  endif()
  set(_nvcc_version "")
  if(CMAKE_CUDA_COMPILER)
    execute_process(COMMAND "${CMAKE_CUDA_COMPILER}" --version OUTPUT_VARIABLE _nvcc_out ERROR_QUIET)
    string(REGEX MATCH "release ([0-9]+\\.[0-9]+)" _m "${_nvcc_out}")
    set(_nvcc_version "${CMAKE_MATCH_1}")
  endif()

  if(_nvcc_version AND _nvcc_version VERSION_LESS 12.0 AND NOT CMAKE_CUDA_HOST_COMPILER
     AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12)
    find_program(_host NAMES clang++-14 g++-11 clang++-13 clang++-12)
    if(_host)
      set(CMAKE_CUDA_HOST_COMPILER "${_host}" CACHE FILEPATH "CUDA host compiler" FORCE)
      message(STATUS "qwen3vl: nvcc ${_nvcc_version} does not accept g++ ${CMAKE_CXX_COMPILER_VERSION}; host compiler ${_host}")
    endif()
  endif()

  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND _nvcc_version)
    set(_wanted 61 70 75 80 86 89 90)
    set(_supported "")
    execute_process(COMMAND "${CMAKE_CUDA_COMPILER}" --list-gpu-code OUTPUT_VARIABLE _codes ERROR_QUIET)
    foreach(_a IN LISTS _wanted)
      if(_codes MATCHES "sm_${_a}")
        list(APPEND _supported ${_a})
      endif()
    endforeach()
    if(NOT _supported)
      set(_supported 75 80 86 89 90)
    endif()
    list(GET _supported -1 _newest)
    set(_archs "")
    foreach(_a IN LISTS _supported)
      if(_a STREQUAL _newest)
        list(APPEND _archs "${_a}")        # SASS + PTX
      else()
        list(APPEND _archs "${_a}-real")   # SASS only
      endif()
    endforeach()
    set(CMAKE_CUDA_ARCHITECTURES "${_archs}" CACHE STRING "CUDA architectures")
  endif()

  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(QWEN3VL_WITH_CUDA ON)
    set(QWEN3VL_CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
    string(REGEX REPLACE "-real" "" QWEN3VL_CUDA_ARCHS_TEXT "${CMAKE_CUDA_ARCHITECTURES}")
    string(REPLACE ";" "," QWEN3VL_CUDA_ARCHS_TEXT "${QWEN3VL_CUDA_ARCHS_TEXT}")
    set(QWEN3VL_CUDA_SUMMARY "on (CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(QWEN3VL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "QWEN3VL_CUDA=ON but no working CUDA compiler (nvcc) was found")
  else()
    set(QWEN3VL_CUDA_SUMMARY "off (no CUDA compiler found: building CPU-only)")
  endif()
endif()
