#include "control/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdlib.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string_view>
#include <vector>

namespace up {

namespace {
constexpr std::string_view temp_suffix = ".tmp.XXXXXX";  // mkstemp fills in the X's

std::string dir_of(const std::string& path) {
  std::vector<char> buf(path.begin(), path.end());
  buf.push_back('\0');
  return dirname(buf.data());
}

// The file an edit of `path` replaces: the link's target when `path` is a symbolic link
// (operators keep configs under /etc and link them in; renaming over the link would turn it
// into a plain file and leave the target stale). False when the link leads nowhere.
bool replace_target(const std::string& path, std::string& target, std::string& err) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) {
    target = path;
    return true;
  }
  char* real = realpath(path.c_str(), nullptr);
  if (real == nullptr) {
    err = path + " is a symbolic link that leads to no file (" + strerror(errno) +
          "); point it at the file, or replace it with the file";
    return false;
  }
  target = real;
  free(real);
  return true;
}
}  // namespace

size_t remove_stale_temporaries(const std::string& link_or_path) {
  if (link_or_path.empty()) return 0;
  std::string path, err;
  if (!replace_target(link_or_path, path, err)) return 0;
  std::string dir = dir_of(path);
  std::string_view fixed = temp_suffix.substr(0, temp_suffix.find('X'));
  std::string prefix = path.substr(path.find_last_of('/') + 1) + std::string(fixed);
  const size_t want_len = prefix.size() + temp_suffix.size() - fixed.size();
  DIR* d = opendir(dir.c_str());
  if (!d) return 0;
  size_t removed = 0;
  while (dirent* e = readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() != want_len || name.substr(0, prefix.size()) != prefix) continue;
    if (unlinkat(dirfd(d), e->d_name, 0) == 0) ++removed;
  }
  closedir(d);
  return removed;
}

bool write_file_atomic(const std::string& link_or_path, const std::string& content,
                       mode_t new_mode, std::string& err) {
  std::string path;
  if (!replace_target(link_or_path, path, err)) return false;
  std::string dir = dir_of(path);
  struct stat st;
  bool existed = stat(path.c_str(), &st) == 0;
  std::string tmp = path + std::string(temp_suffix);
  int fd = mkstemp(tmp.data());
  if (fd < 0) {
    err = "cannot create a temporary file next to " + path + ": " + strerror(errno);
    return false;
  }
  auto fail = [&](const char* what) {
    err = std::string(what) + " " + tmp + ": " + strerror(errno);
    close(fd);
    unlink(tmp.c_str());
    return false;
  };
  if (fchmod(fd, existed ? (st.st_mode & 07777) : new_mode) != 0) return fail("chmod");
  if (existed && fchown(fd, st.st_uid, st.st_gid) != 0 && errno != EPERM) return fail("chown");
  const char* p = content.data();
  size_t left = content.size();
  while (left) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail("fsync");
  if (close(fd) != 0) {
    err = "close " + tmp + ": " + strerror(errno);
    unlink(tmp.c_str());
    return false;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    err = "rename " + tmp + " -> " + path + ": " + strerror(errno);
    unlink(tmp.c_str());
    return false;
  }
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);  // the rename itself must survive a crash
    close(dfd);
  }
  return true;
}

}  // namespace up
