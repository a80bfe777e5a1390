# The Debian package, built by `cpack -G DEB` from this tree's own install rules
# (scripts/package.sh; docs/operations.md, "The Debian package" says why CPack and not a
# debian/ directory). What only a system package installs (the systemd unit, /etc/acp, the
# Debian copyright and changelog) is the `deb` component: EXCLUDE_FROM_ALL keeps it out of a
# plain `cmake --install`, CPACK_INSTALL_CMAKE_PROJECTS adds it to the package.
set(ACP_DEB_DIR ${PROJECT_SOURCE_DIR}/deploy/debian)

# dpkg and lintian read the version from the changelog in the package: it must be this one.
file(STRINGS ${ACP_DEB_DIR}/changelog acp_changelog_head LIMIT_COUNT 1)
if(NOT acp_changelog_head MATCHES "^acp \\(${PROJECT_VERSION}\\) ")
  message(FATAL_ERROR "deploy/debian/changelog: the first entry is not for acp "
    "${PROJECT_VERSION} (project() in CMakeLists.txt); add one for it at the top")
endif()

install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/acp.service
  DESTINATION /lib/systemd/system COMPONENT deb EXCLUDE_FROM_ALL)
install(FILES ${ACP_DEB_DIR}/config.yml ${ACP_DEB_DIR}/policy.yml
  DESTINATION /etc/acp COMPONENT deb EXCLUDE_FROM_ALL)
# Compressed at package time (cmake/AcpPackagePrepare.cmake), with the man pages.
install(FILES ${ACP_DEB_DIR}/copyright ${ACP_DEB_DIR}/changelog
  DESTINATION share/doc/acp COMPONENT deb EXCLUDE_FROM_ALL)
install(FILES ${ACP_DEB_DIR}/lintian-overrides
  DESTINATION share/lintian/overrides RENAME acp COMPONENT deb EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME acp)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Installed under /usr whatever this tree's CMAKE_INSTALL_PREFIX; with DESTDIR, the absolute
# destinations (/lib/systemd/system, /etc/acp) go into the staging tree, never onto /.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# cpack installs what is built, it does not build it first: on the test tree (build/) "all" is
# every test and bench, which the package does not need (scripts/package.sh builds its targets).
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
set(CPACK_INSTALL_CMAKE_PROJECTS "${PROJECT_BINARY_DIR};acp;ALL;/;${PROJECT_BINARY_DIR};acp;deb;/")
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_SOURCE_DIR}/cmake/AcpPackagePrepare.cmake)
set(CPACK_PACKAGE_CONTACT "ACP developers <acp@example.org>" CACHE STRING
  "Maintainer field of the Debian package")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "consent proxy and cgroup BPF wall for AI agents")
# The extended description; CPack puts the summary above it.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "ACP confines an AI agent and every process it spawns in a cgroup v2
behind cgroup BPF programs whose only way out is a local consent proxy. The
proxy asks the policy, and a human when the policy says ask, before anything
leaves, and writes every decision to a hash-chained audit log. acp run
confines one agent; acp daemon (acp.service) holds the walls and proxies of
every session on a server.")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/acp/acp")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Depends from the ELF files' libraries (dpkg-shlibdeps); iptables for --backend=iptables on
# kernels without cgroup BPF, docker for acp contain.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "iptables")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "docker.io")
# acp-dbgsym: the debug info split off by objcopy (usr/lib/debug/.build-id/), and the shipped
# ELF files stripped by the same step; so no CPACK_STRIP_FILES, which would strip it first.
set(CPACK_DEBIAN_DEBUGINFO_PACKAGE ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${ACP_DEB_DIR}/postinst ${ACP_DEB_DIR}/prerm ${ACP_DEB_DIR}/postrm ${ACP_DEB_DIR}/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_THREADS 0)
include(CPack)
