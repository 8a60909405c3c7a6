// write_file_atomic (src/control/atomic_file.cpp): a symbolic link stays a link and its target
// gets the new content; the temporary file lives beside the target.
#include "control/atomic_file.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/uringproxy-atomic-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

TEST_CASE("atomic file: an edit through a symbolic link replaces the target, the link stays") {
  Dir d;
  fs::create_directories(d.path + "/etc");
  fs::create_directories(d.path + "/run");
  std::string target = d.path + "/etc/users.json";
  std::string link = d.path + "/run/users.json";
  { std::ofstream(target) << "old"; }
  REQUIRE(chmod(target.c_str(), 0640) == 0);
  fs::create_symlink("../etc/users.json", link);  // relative, as operators often write them

  std::string err;
  REQUIRE_MESSAGE(up::write_file_atomic(link, "new", 0600, err), err);
  CHECK(fs::is_symlink(link));
  CHECK(fs::read_symlink(link) == "../etc/users.json");
  CHECK(slurp(target) == "new");
  CHECK(slurp(link) == "new");
  struct stat st{};
  REQUIRE(stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);  // the target's mode is kept
  // No temporary file is left in either directory.
  for (const char* sub : {"/etc", "/run"})
    for (const auto& e : fs::directory_iterator(d.path + sub))
      CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);

  // Stale temporaries of an interrupted edit are looked for beside the target too.
  { std::ofstream(target + ".tmp.AbC123") << "partial"; }
  CHECK(up::remove_stale_temporaries(link) == 1);
  CHECK(!fs::exists(target + ".tmp.AbC123"));
}

TEST_CASE("atomic file: a link that leads nowhere is refused with the reason") {
  Dir d;
  std::string link = d.path + "/users.json";
  fs::create_symlink(d.path + "/missing/users.json", link);
  std::string err;
  CHECK(!up::write_file_atomic(link, "new", 0600, err));
  CHECK(err.find("is a symbolic link that leads to no file") != std::string::npos);
  CHECK(fs::is_symlink(link));

  // A plain path that does not exist yet is created.
  std::string plain = d.path + "/fresh.json";
  REQUIRE_MESSAGE(up::write_file_atomic(plain, "x", 0600, err), err);
  CHECK(slurp(plain) == "x");
  CHECK(!fs::is_symlink(plain));
}
