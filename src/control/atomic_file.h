#pragma once
// Replaces a file so that a crash at any point leaves either the old or the new content, never
// a torn file: temporary file in the same directory, fsync, rename over, fsync the directory.
// The file's mode (and owner, when we may) is kept; a new file gets `new_mode`. A symbolic link
// stays a link: its target is replaced, in the target's directory.
#include <sys/types.h>

#include <string>

namespace up {

bool write_file_atomic(const std::string& path, const std::string& content, mode_t new_mode,
                       std::string& err);

// Deletes the temporary files a crash in the middle of write_file_atomic(path) left behind
// (they hold a full or partial copy of the file, secrets included); returns how many.
size_t remove_stale_temporaries(const std::string& path);

}  // namespace up
