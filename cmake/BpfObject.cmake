# bpf_object(NAME SOURCE [HEADERS...])
#
# The one build path for BPF: compiles SOURCE with clang -target bpf into
# ${CMAKE_CURRENT_BINARY_DIR}/NAME.bpf.o, then generates the libbpf skeleton
# NAME.skel.h with `bpftool gen skeleton` next to it. Skeletons live in the build
# tree only. Creates an INTERFACE target NAME_skel that puts the skeleton on the
# include path and links libbpf.
find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)

execute_process(COMMAND uname -m OUTPUT_VARIABLE _acp_arch OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_acp_arch STREQUAL "x86_64")
  set(BPF_TARGET_ARCH x86)
elseif(_acp_arch STREQUAL "aarch64")
  set(BPF_TARGET_ARCH arm64)
else()
  set(BPF_TARGET_ARCH ${_acp_arch})
endif()

function(bpf_object name source)
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o)
  set(skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
  get_filename_component(src_abs ${source} ABSOLUTE)
  get_filename_component(src_dir ${src_abs} DIRECTORY)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${BPF_CLANG} -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_${BPF_TARGET_ARCH}
            -I${src_dir} -I/usr/include/${CMAKE_LIBRARY_ARCHITECTURE}
            -c ${src_abs} -o ${obj}
    DEPENDS ${src_abs} ${ARGN}
    COMMENT "BPF ${name}: clang -target bpf"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}
    DEPENDS ${obj}
    COMMENT "BPF ${name}: bpftool gen skeleton"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${CMAKE_CURRENT_BINARY_DIR})
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
endfunction()
