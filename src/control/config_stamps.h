#pragma once
// Which version of the configuration files the running configuration was read from. Taken
// before the files are read, so a change made while they were being read is not missed. A live
// edit starts from the configuration in force when the files are as they were (no need to read
// 100,000 users again), and from the files when someone edited them by hand since.
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "uringproxy/config.h"

namespace up {

struct FileStamp {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;

  static FileStamp of(const std::string& path);  // follows symlinks: the file read
};

struct ConfigStamps {
  bool valid = false;
  std::string config_path, users_path, proxies_path;
  FileStamp config, users, proxies;

  // Stamps the config file, then reads it for the users and proxies paths and stamps those.
  static ConfigStamps take(const std::string& config_path);
  // True when `set` was loaded from the files these stamps name: keep them, else drop them.
  bool describes(const ConfigSet& set) const;
  // Valid and no file has changed since.
  bool unchanged() const;
};

}  // namespace up
