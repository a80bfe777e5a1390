// Whole-file writes that a reader (or a crash) never sees half done: the content goes to a
// temporary file in the target's directory, is fsynced, renamed (or linked) over the target,
// and the directory is fsynced so that the new name survives a power cut too. On any failure
// the target keeps its old content and the temporary file is removed.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "acp/util/result.hpp"

namespace acp::util {

enum class IfExists {
  kReplace,  // rename(2) over the target
  kKeep,     // link(2): fails with EEXIST and keeps a file another writer put there first
};

// Writes `content` to `path` with permission bits `mode` (the umask does not apply). The
// temporary file is `path`.tmp.XXXXXX (see atomic_write_temp_prefix). The parent directory
// must exist (create_directories). Symlinks at `path` are replaced, never followed.
Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode,
                         IfExists if_exists = IfExists::kReplace);

// What every temporary file of write_file_atomic(path) starts with: a sweeper that removes
// the leftovers of a writer that died between create and rename matches on it.
std::string atomic_write_temp_prefix(const std::string& path);

// mkdir -p: creates the missing directories of `dir` with `mode` (umask aside); directories
// that exist are left as they are.
Status create_directories(const std::string& dir, mode_t mode);

}  // namespace acp::util
