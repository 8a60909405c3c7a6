#pragma once
// Replaces a file so that a crash at any point leaves either the old or the new content, never
// a torn file: temporary file in the same directory, fsync, rename over, fsync the directory.
// The file's mode (and owner, when we may) is kept; a new file gets `new_mode`.
#include <sys/types.h>

#include <string>

namespace up {

bool write_file_atomic(const std::string& path, const std::string& content, mode_t new_mode,
                       std::string& err);

}  // namespace up
