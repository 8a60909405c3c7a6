// external_proxy.json (docs/configuration.md#external_proxyjson) to UpstreamProxy records. The file holds upstream secrets:
// no message ever shows a password or a username.
#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>

#include "config/host_port.h"
#include "config/json_reader.h"
#include "config/on_failure.h"
#include "uringproxy/config.h"

namespace up {

namespace {

using config::FileDiagnostics;
using config::ObjectReader;
using config::quote;

// Fields other tools (the seed's proxy database) write that mean nothing here.
constexpr const char* kHarmlessProxyFields[] = {"created_at"};

bool is_tls_type(UpstreamType t) { return t == UpstreamType::socks5s || t == UpstreamType::https; }
bool is_socks_type(UpstreamType t) { return t == UpstreamType::socks5 || t == UpstreamType::socks5s; }

bool is_address(const std::string& a) {
  in6_addr a6;
  return config::is_host_name(a) ||
         (a.find('\0') == std::string::npos && inet_pton(AF_INET6, a.c_str(), &a6) == 1);
}

// Messages about proxies[i] name the upstream by its id when it has a usable one, else only
// the index.
bool usable_id(const std::string& id) {
  return !id.empty() && id.find_first_of(std::string(" \t\r\n\0", 5)) == std::string::npos;
}

std::string proxy_path(const rapidjson::Value& entry, size_t i) {
  auto n = entry.FindMember("id");
  if (n != entry.MemberEnd() && n->value.IsString()) {
    std::string id(n->value.GetString(), n->value.GetStringLength());
    if (usable_id(id)) return upstream_where(id, i);
  }
  return config::index_path("proxies", i);
}

bool read_proxy(ObjectReader& r, const std::string& dir, UpstreamProxy& p) {
  FileDiagnostics& fd = r.diag();
  size_t errors = fd.error_count();
  if (r.get_string("id", p.id, true) && !usable_id(p.id))
    r.error("id", quote(p.id) + " contains whitespace; use letters, digits, '-' or '_'");
  else if (p.id.starts_with(agent_route_prefix))
    r.error("id", quote(p.id) + ": ids starting with \"agent:\" name agents (agents_file); "
                  "choose another");
  r.get_string("name", p.name, false, true);
  std::string type;
  bool type_ok = false;
  if (r.get_string("type", type, true)) {
    type_ok = true;
    if (type == "socks5") {
      p.type = UpstreamType::socks5;
    } else if (type == "socks5s") {
      p.type = UpstreamType::socks5s;
    } else if (type == "http") {
      p.type = UpstreamType::http;
    } else if (type == "https") {
      p.type = UpstreamType::https;
    } else {
      type_ok = false;
      r.error("type", quote(type) + " is not a proxy type; use \"socks5\", \"socks5s\" (SOCKS5 "
                                     "over TLS), \"http\" (CONNECT) or \"https\" (CONNECT over TLS)");
    }
  }
  if (r.get_string("address", p.address, true) && !is_address(p.address)) {
    r.error("address", quote(p.address) + " is not a host name or IP address (the port goes in "
                                           "\"port\")");
  }
  r.get_uint_as("port", p.port, 1, 65535, true);
  // RFC 1929 carries each in one length byte.
  if (r.get_string("username", p.username, false, true) && is_socks_type(p.type) &&
      p.username.size() > 255)
    r.error("username", "is longer than 255 bytes, more than SOCKS5 can send");
  if (const rapidjson::Value* pw = r.find("password")) {
    if (!pw->IsString()) {
      r.error("password", std::string("must be a string, not ") + config::json_type_name(*pw));
    } else {
      p.password.assign(pw->GetString(), pw->GetStringLength());
      if (is_socks_type(p.type) && p.password.size() > 255)
        r.error("password", "is longer than 255 bytes, more than SOCKS5 can send");
    }
  }
  r.get_bool("enabled", p.enabled);
  if (r.get_string("group", p.group, false, true) && !p.group.empty() &&
      p.group.find_first_of(std::string(" \t\r\n:.\0", 7)) != std::string::npos) {
    r.error("group", quote(p.group) + " is not a group name (no '.', ':' or whitespace)");
    p.group.clear();
  }
  if (const rapidjson::Value* tls = r.get_object("tls")) {
    if (type_ok && !is_tls_type(p.type)) {
      r.error("tls", "is only for TLS types; use type \"" +
                         std::string(p.type == UpstreamType::http ? "https" : "socks5s") +
                         "\" or remove the tls block");
    }
    ObjectReader t(fd, *tls, r.field("tls"));
    if (t.get_string("server_name", p.tls.server_name) && !is_address(p.tls.server_name))
      t.error("server_name", quote(p.tls.server_name) + " is not a host name");
    t.get_bool("verify", p.tls.verify);
    std::string ca;
    if (t.get_string("ca_file", ca) && ca.find('\0') == std::string::npos)
      p.tls.ca_file = config::resolve_path(dir, ca);
    t.finish();
  }
  if (is_tls_type(p.type) && p.tls.server_name.empty()) p.tls.server_name = p.address;
  config::read_on_failure(r, "on_failure", p.on_failure);
  if (p.on_failure.kind == OnFailure::Kind::upstream && p.on_failure.upstream_id == p.id)
    r.error("on_failure", "names this proxy itself; use \"reject\", \"direct\" or another proxy");
  for (const char* f : kHarmlessProxyFields) r.ignore(f);
  r.finish();
  return fd.error_count() == errors;
}

// on_failure chains between upstreams must end: A -> B -> A would retry forever.
void check_on_failure_chains(FileDiagnostics& fd, const std::vector<UpstreamProxy>& proxies,
                             const std::vector<size_t>& index_in_file,
                             const std::map<std::string, size_t>& all_ids) {
  std::map<std::string, size_t> by_id;
  for (size_t i = 0; i < proxies.size(); ++i) by_id.emplace(proxies[i].id, i);
  auto next = [&](size_t i) -> size_t {
    const OnFailure& f = proxies[i].on_failure;
    if (f.kind != OnFailure::Kind::upstream) return SIZE_MAX;
    auto it = by_id.find(f.upstream_id);
    return it == by_id.end() ? SIZE_MAX : it->second;
  };
  for (size_t i = 0; i < proxies.size(); ++i) {
    const OnFailure& f = proxies[i].on_failure;
    if (f.kind == OnFailure::Kind::upstream && !all_ids.count(f.upstream_id))
      fd.error(upstream_where(proxies[i].id, index_in_file[i]) + ".on_failure",
               quote(f.upstream_id) +
                   " is not the id of a proxy in this file; use \"reject\", \"direct\" or an "
                   "existing id");
  }
  // Each node has at most one successor: colour walk, 0 new, 1 on the current walk, 2 done.
  std::vector<int> colour(proxies.size(), 0);
  for (size_t start = 0; start < proxies.size(); ++start) {
    std::vector<size_t> walk;
    size_t cur = start;
    while (cur != SIZE_MAX && colour[cur] == 0) {
      colour[cur] = 1;
      walk.push_back(cur);
      cur = next(cur);
    }
    if (cur != SIZE_MAX && colour[cur] == 1 && next(cur) != cur) {
      // The loop is the tail of this walk from cur; report it once, at its first member.
      size_t first = cur;
      std::string chain;
      for (size_t k = cur;;) {
        first = std::min(first, k);
        k = next(k);
        if (k == cur) break;
      }
      chain = proxies[first].id;
      for (size_t k = next(first);; k = next(k)) {
        chain += " -> " + proxies[k].id;
        if (k == first) break;
      }
      fd.error(upstream_where(proxies[first].id, index_in_file[first]) + ".on_failure",
               "makes a loop (" + chain + "); end the chain with \"reject\" or \"direct\"");
    }
    for (size_t k : walk) colour[k] = 2;
  }
}

}  // namespace

bool parse_proxies(const std::string& text, const std::string& path,
                   std::vector<UpstreamProxy>& out, Diagnostics& diag,
                   std::vector<std::string>* skipped) {
  FileDiagnostics fd(path, diag);
  size_t errors_before = diag.errors.size();
  out.clear();
  std::string dir = config::parent_dir(config::absolute_path(path));
  rapidjson::Document doc;
  const rapidjson::Value* arr = config::parse_json_list(text, fd, doc, "proxies");
  if (arr == nullptr) return false;

  std::map<std::string, size_t> ids;
  std::vector<size_t> index_in_file;
  for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
    const rapidjson::Value& v = (*arr)[i];
    if (!v.IsObject()) {
      fd.error(config::index_path("proxies", i),
               std::string("must be an object {\"id\", \"type\", \"address\", \"port\", "
                           "...}, not ") + config::json_type_name(v));
      config::move_errors_since(diag, diag.errors.size() - 1, skipped);
      continue;
    }
    std::string where = proxy_path(v, i);
    size_t entry_errors = diag.errors.size();
    ObjectReader r(fd, v, where);
    UpstreamProxy p;
    bool ok = read_proxy(r, dir, p);
    if (!p.id.empty()) {
      auto [it, fresh] = ids.emplace(p.id, i);
      if (!fresh) {
        fd.error(where + ".id", "is already " + upstream_where(p.id, it->second) +
                                    "; ids must be unique");
        ok = false;
      }
    }
    if (ok) {
      out.push_back(std::move(p));
      index_in_file.push_back(i);
    } else {
      config::move_errors_since(diag, entry_errors, skipped);
    }
  }
  check_on_failure_chains(fd, out, index_in_file, ids);
  return diag.errors.size() == errors_before;
}

}  // namespace up
