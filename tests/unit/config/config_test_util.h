#pragma once
// Helpers for the config tests: diagnostics queries and throw-away directories.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "uringproxy/config.h"

namespace up::test {

inline std::string all_messages(const Diagnostics& d) {
  std::string s;
  for (const auto& e : d.errors) s += "E: " + e + "\n";
  for (const auto& w : d.warnings) s += "W: " + w + "\n";
  return s;
}

// True when one error contains every fragment.
inline bool has_error(const Diagnostics& d, std::initializer_list<const char*> parts) {
  for (const auto& e : d.errors) {
    bool all = true;
    for (const char* p : parts) all = all && e.find(p) != std::string::npos;
    if (all) return true;
  }
  return false;
}

inline bool has_warning(const Diagnostics& d, std::initializer_list<const char*> parts) {
  for (const auto& e : d.warnings) {
    bool all = true;
    for (const char* p : parts) all = all && e.find(p) != std::string::npos;
    if (all) return true;
  }
  return false;
}

inline bool mentions(const Diagnostics& d, const std::string& s) {
  return all_messages(d).find(s) != std::string::npos;
}

// A directory under /tmp removed at scope end.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/uringproxy-config-test-XXXXXX";
    char* p = mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::string p = path_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    {
      std::ofstream f(p, std::ios::binary | std::ios::trunc);
      f << text;
    }
    chmod(p.c_str(), mode);
    return p;
  }

 private:
  std::string path_;
};

// Minimal valid hashes for users.json tests (made with mkpasswd / openssl passwd).
inline const char* kSha512 =
    "$6$k48aY2tlRB144ZZy$HNBvP791gOg7Ec.4BvCc6BDAl4v46MUgsIMzQBAdW7udYXMmGEWdFDLg2HehdTn0LpgMbdLpn"
    "Vp1EEkU0QXNv.";
inline const char* kYescrypt = "$y$j9T$R1MEyMwxm3hfa.zJytAYG0$r7Jrf8nYNInaIvf3kBFBhfxv5hMxv4aWP8SeLHm.OUD";

}  // namespace up::test
