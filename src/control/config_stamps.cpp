#include "control/config_stamps.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace up {

FileStamp FileStamp::of(const std::string& path) {
  FileStamp s;
  struct stat st{};
  if (path.empty() || stat(path.c_str(), &st) != 0) return s;
  s.exists = true;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  s.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
  return s;
}

ConfigStamps ConfigStamps::take(const std::string& config_path) {
  ConfigStamps s;
  s.config_path = config_path;
  s.config = FileStamp::of(config_path);
  std::ifstream in(config_path);
  if (!s.config.exists || !in) return s;
  std::stringstream text;
  text << in.rdbuf();
  Config c;
  Diagnostics d;
  if (!parse_config(text.str(), config_path, c, d)) return s;
  s.users_path = c.users_file;
  s.proxies_path = c.proxies_file;
  s.users = FileStamp::of(s.users_path);
  s.proxies = FileStamp::of(s.proxies_path);
  s.valid = true;
  return s;
}

bool ConfigStamps::describes(const ConfigSet& set) const {
  return valid && set.config.users_file == users_path && set.config.proxies_file == proxies_path;
}

bool ConfigStamps::unchanged() const {
  return valid && FileStamp::of(config_path) == config && FileStamp::of(users_path) == users &&
         FileStamp::of(proxies_path) == proxies;
}

}  // namespace up
