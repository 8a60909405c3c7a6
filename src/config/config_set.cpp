// Loads uringproxy.json with its users and proxies files, and checks what refers to what
// across them.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "config/json_reader.h"
#include "config/on_failure.h"
#include "uringproxy/config.h"

namespace up {

namespace {

using config::FileDiagnostics;
using config::quote;

struct FileRead {
  std::string text;
  mode_t mode = 0;
  std::string error;  // "" on success
};

std::string size_text(uint64_t n) {
  std::string s = std::to_string(n) + " bytes";
  if (n >= (1u << 20)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " (%.1f MiB)", static_cast<double>(n) / (1 << 20));
    s += buf;
  }
  return s;
}

// The main config is read before limits.max_config_file_bytes is known: it has the default cap.
constexpr const char* kMainConfigTooBig = "a main config is never this large; is this the right file?";

// `raise` says how to lift the cap, for the message.
FileRead read_file(const std::string& path, uint64_t max_bytes, const std::string& raise) {
  FileRead r;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.error = std::string("cannot open: ") + std::strerror(errno);
    return r;
  }
  auto too_big = [&](const std::string& what) {
    return what + " the cap of " + size_text(max_bytes) + "; " + raise;
  };
  struct stat st{};
  if (fstat(fd, &st) != 0) {
    r.error = std::string("cannot stat: ") + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    r.error = "is not a regular file";
  } else if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    r.error = too_big("is " + size_text(static_cast<uint64_t>(st.st_size)) + ", more than");
  } else {
    r.mode = st.st_mode;
    r.text.reserve(static_cast<size_t>(st.st_size));
    char buf[65536];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        r.error = std::string("cannot read: ") + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      if (r.text.size() + static_cast<size_t>(n) > max_bytes) {  // grew since fstat
        r.error = too_big("grew while read, past");
        r.text.clear();
        r.text.shrink_to_fit();
        break;
      }
      r.text.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return r;
}

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// A group named in the files, where it was first seen and how often.
struct GroupUse {
  std::string first;
  size_t count = 0;
};

void check_cross_references(const std::string& config_shown, const std::string& users_shown,
                            const std::string& proxies_shown, bool users_ok, bool proxies_ok,
                            const ConfigSet& set, Diagnostics& diag) {
  const Config& c = set.config;
  FileDiagnostics cfd(config_shown, diag);
  FileDiagnostics ufd(users_shown, diag);
  std::set<std::string> ids, groups;
  for (const UpstreamProxy& p : set.proxies) {
    ids.insert(p.id);
    if (!p.group.empty()) groups.insert(p.group);
  }
  // A group may have only agents as members.
  for (const Agent& a : set.agents) groups.insert(a.group);
  std::string where_proxies =
      c.proxies_file.empty()
          ? std::string("there is no proxies_file in ") + config_shown + "; add one"
          : "it is not the id of a proxy in " + proxies_shown;
  auto check_id = [&](FileDiagnostics& fd, const std::string& field, const std::string& id) {
    if (ids.count(id)) return;
    fd.error(field, quote(id) + " names no upstream proxy: " + where_proxies +
                        ", or use \"reject\" or \"direct\"");
  };

  if (proxies_ok) {
    if (c.routing.on_failure.kind == OnFailure::Kind::upstream)
      check_id(cfd, "routing.on_failure", c.routing.on_failure.upstream_id);
    for (const auto& [name, g] : c.groups) {
      if (g.on_failure.kind == OnFailure::Kind::upstream)
        check_id(cfd, "groups." + name + ".on_failure", g.on_failure.upstream_id);
      if (!groups.count(name))
        cfd.warning("groups." + name, "no upstream proxy has \"group\": " + quote(name) +
                                          ", so the group has no members yet (add one in " +
                                          (c.proxies_file.empty() ? "a proxies_file"
                                                                  : proxies_shown) +
                                          ")");
    }
  }
  if (!(users_ok && proxies_ok)) return;  // indices and ids would be unreliable
  std::map<std::string, GroupUse> unknown_groups;
  for (size_t i = 0; i < set.users.size(); ++i) {
    const User& u = set.users[i];
    // Every user loaded: i is the file's index. The text is made only for a message.
    auto where = [&] { return user_where(u.username, i); };
    if (u.external_proxy_id && !ids.count(*u.external_proxy_id) &&
        !names_agent(set.agents, *u.external_proxy_id))
      ufd.error(where() + ".external_proxy_id",
                quote(*u.external_proxy_id) +
                    (!u.external_proxy_id->starts_with(agent_route_prefix)
                         ? " names no upstream proxy: " + where_proxies
                     : c.agents_file.empty()
                         ? " names an agent, but there is no agents_file in " + config_shown
                         : " names no agent: no agent in " +
                               config::display_path(c.agents_file) + " has that id") +
                    ", or set null to route this user directly");
    if (!u.groups) continue;
    for (size_t g = 0; g < u.groups->size(); ++g) {
      const std::string& name = (*u.groups)[g];
      if (groups.count(name)) continue;
      GroupUse& use = unknown_groups[name];
      if (use.count++ == 0) use.first = config::index_path(where() + ".groups", g);
    }
  }
  for (const auto& [name, use] : unknown_groups) {
    std::string where = use.first;
    if (use.count > 1) where += " (and " + std::to_string(use.count - 1) + " more users)";
    ufd.warning(where, "no upstream proxy has \"group\": " + quote(name) +
                           ", so this group cannot be selected yet");
  }
}

}  // namespace

bool read_config_file(const std::string& path, uint64_t max_bytes, std::string& text,
                      std::string& error) {
  FileRead r = read_file(path, max_bytes, kMainConfigTooBig);
  error = r.error;
  text = std::move(r.text);
  return error.empty();
}

bool load_config_set(const std::string& config_path, ConfigSet& out, Diagnostics& diag) {
  size_t errors_before = diag.errors.size();
  out = ConfigSet{};
  FileDiagnostics cfd(config_path, diag);
  FileRead main = read_file(config_path, kDefaultMaxConfigFileBytes, kMainConfigTooBig);
  if (!main.error.empty()) {
    cfd.error("", main.error + " (check the path given with --config)");
    return false;
  }
  parse_config(main.text, config_path, out.config, diag);
  const Config& c = out.config;
  const uint64_t cap = c.limits.max_config_file_bytes;
  const std::string raise =
      "raise limits.max_config_file_bytes in " + config_path + ", or shrink the file";

  bool users_ok = true;
  std::string users_shown = config::display_path(c.users_file);
  // With the PostgreSQL store the users and proxies files are not read (apply_store_records).
  const bool from_files = c.store.type == StoreConfig::Type::json;
  if (from_files && !c.users_file.empty()) {
    FileDiagnostics ufd(users_shown, diag);
    FileRead f = read_file(c.users_file, cap, raise);
    if (!f.error.empty()) {
      ufd.error("", f.error + " (users_file in " + config_path + " points here)");
      users_ok = false;
    } else {
      // Password hashes invite offline guessing: say so, but do not refuse (they are not the
      // passwords themselves, unlike the proxies file).
      if (f.mode & S_IROTH)
        diag.warnings.push_back(users_shown + ": readable by every local user (mode " +
                                octal_mode(f.mode) + ") and it holds password hashes; run chmod 600 " +
                                users_shown);
      users_ok = parse_users(f.text, users_shown, out.users, diag);
    }
  }

  bool proxies_ok = true;
  std::string proxies_shown = config::display_path(c.proxies_file);
  if (from_files && !c.proxies_file.empty()) {
    FileDiagnostics pfd(proxies_shown, diag);
    FileRead f = read_file(c.proxies_file, cap, raise);
    if (!f.error.empty()) {
      pfd.error("", f.error + " (proxies_file in " + config_path + " points here)");
      proxies_ok = false;
    } else if ((f.mode & 077) != 0) {
      // Checked on the opened file, so a swap between check and read cannot slip through.
      pfd.error("", "group or others may access it (mode " + octal_mode(f.mode) +
                        ") and it holds upstream passwords; run chmod 600 " + proxies_shown);
      proxies_ok = false;
    } else {
      proxies_ok = parse_proxies(f.text, proxies_shown, out.proxies, diag);
    }
  }

  // Agent secrets are hashes, but a readable file also tells every local user which agents
  // exist and where they serve: refused like the proxies file.
  std::string agents_shown = config::display_path(c.agents_file);
  if (!from_files && !c.agents_file.empty()) {
    // Kept, not refused: `uringproxyctl store import` loads the file this names by default.
    cfd.warning("agents_file", "is not read with \"store\": {\"type\": \"postgres\"}: the agents "
                               "are the store's (table agents; uringproxyctl agent add, or "
                               "uringproxyctl store import to load " + agents_shown +
                               "); remove agents_file once imported");
  } else if (!c.agents_file.empty()) {
    FileDiagnostics afd(agents_shown, diag);
    FileRead f = read_file(c.agents_file, cap, raise);
    if (!f.error.empty()) {
      afd.error("", f.error + " (agents_file in " + config_path + " points here)");
    } else if ((f.mode & 077) != 0) {
      afd.error("", "group or others may access it (mode " + octal_mode(f.mode) +
                        ") and it holds the agents' secret hashes; run chmod 600 " +
                        agents_shown);
    } else {
      parse_agents(f.text, agents_shown, out.agents, diag);
    }
  }

  // The database password: like the proxies file, refused when others may read it.
  if (!c.store.password_file.empty()) {
    std::string shown = config::display_path(c.store.password_file);
    FileRead f = read_file(c.store.password_file, kDefaultMaxConfigFileBytes, raise);
    if (!f.error.empty())
      cfd.error("store.password_file", f.error);
    else if ((f.mode & 077) != 0)
      cfd.error("store.password_file", shown + ": group or others may access it (mode " +
                                           octal_mode(f.mode) +
                                           ") and it holds the database password; run chmod 600 " +
                                           shown);
  }

  if (from_files)
    check_cross_references(config_path, users_shown, proxies_shown, users_ok, proxies_ok, out,
                           diag);
  return diag.errors.size() == errors_before;
}

bool apply_store_records(const std::string& users_doc, const std::string& proxies_doc,
                         const std::string& groups_doc, ConfigSet& out, Diagnostics& diag) {
  size_t errors_before = diag.errors.size();
  const std::string users_shown = "store (table users)";
  const std::string proxies_shown = "store (table upstreams)";
  out.users.clear();
  out.proxies.clear();
  // A row that does not load is skipped and reported; the rest applies (docs/configuration.md
  // #store). Only a problem with the records as a whole refuses them.
  std::vector<std::string> skipped;
  bool users_ok = parse_users(users_doc, users_shown, out.users, diag, &skipped);
  bool proxies_ok = parse_proxies(proxies_doc, proxies_shown, out.proxies, diag, &skipped);
  if (proxies_ok) {
    // A user routed to an upstream (or agent) that is not there, or was skipped, is skipped.
    RouteIds routes(out.proxies, out.agents);
    size_t kept = 0;
    for (size_t i = 0; i < out.users.size(); ++i) {
      User& u = out.users[i];
      if (u.external_proxy_id && !routes.contains(*u.external_proxy_id)) {
        skipped.push_back(users_shown + ": user " + quote(u.username) +
                          ".external_proxy_id: " + quote(*u.external_proxy_id) +
                          " names no upstream in the store (table upstreams) and no agent");
        continue;
      }
      if (kept != i) out.users[kept] = std::move(u);
      ++kept;
    }
    out.users.resize(kept);
  }
  for (std::string& s : skipped)
    diag.warnings.push_back(std::move(s) + "; this row is skipped, the others apply (fix it "
                                           "with uringproxyctl or in the table)");
  std::map<std::string, GroupConfig> groups;
  if (parse_groups(groups_doc, "store (table groups)", groups, diag))
    for (auto& [name, g] : groups) out.config.groups[name] = g;
  check_cross_references(out.config.path, users_shown, proxies_shown, users_ok, proxies_ok, out,
                         diag);
  return diag.errors.size() == errors_before;
}

bool apply_store_agents(const std::string& agents_doc, ConfigSet& out, Diagnostics& diag) {
  size_t errors_before = diag.errors.size();
  std::vector<std::string> skipped;
  parse_agents(agents_doc, "store (table agents)", out.agents, diag, &skipped);
  for (std::string& s : skipped)
    diag.warnings.push_back(std::move(s) + "; this row is skipped, the other agents serve (fix it "
                                           "with uringproxyctl agent add/del or in the table)");
  return diag.errors.size() == errors_before;
}

}  // namespace up
