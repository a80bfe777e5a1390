# CPACK_PRE_BUILD_SCRIPTS of the Debian package (cmake/AcpPackage.cmake): what dh_strip and
# dh_compress would do in a debian/ build, on the staged files before CPack splits off the debug
# symbols and builds the archives.
set(root ${CPACK_TEMPORARY_INSTALL_DIRECTORY})

# Man pages and the changelog gzipped at maximum compression, without name or time stamp
# (gzip -9n), so two builds of one tree give the same files.
file(GLOB_RECURSE to_compress ${root}/usr/share/man/*.[1-9] ${root}/usr/share/doc/acp/changelog)
foreach(f IN LISTS to_compress)
  execute_process(COMMAND gzip -9nf ${f} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "gzip -9nf ${f} failed (${rc})")
  endif()
endforeach()

# The compilers' version strings (.comment) serve no one at run time.
foreach(f ${root}/usr/sbin/acp ${root}/usr/lib/acp/libacp_preload.so)
  execute_process(COMMAND objcopy --remove-section=.comment ${f} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "objcopy --remove-section=.comment ${f} failed (${rc})")
  endif()
endforeach()
