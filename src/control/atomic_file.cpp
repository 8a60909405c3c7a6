#include "control/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

namespace up {

bool write_file_atomic(const std::string& path, const std::string& content, mode_t new_mode,
                       std::string& err) {
  std::vector<char> buf(path.begin(), path.end());
  buf.push_back('\0');
  std::string dir = dirname(buf.data());
  struct stat st;
  bool existed = stat(path.c_str(), &st) == 0;
  std::string tmp = path + ".tmp.XXXXXX";
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
