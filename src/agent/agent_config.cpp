// agent.json to AgentConfig (src/agent/agent_config.h). The "acl" and "dns" sections are read
// by the proxy's own readers (config/config_sections.h), so both files spell them alike.
#include "agent/agent_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "config/config_sections.h"
#include "config/host_port.h"
#include "config/json_reader.h"
#include "proto/agent_frame.h"

namespace up {

namespace {

using config::FileDiagnostics;
using config::ObjectReader;
using config::quote;

constexpr uint64_t kMaxMs = 24ull * 3600 * 1000;

void read_gateway(ObjectReader& root, AgentConfig& out) {
  if (!root.get_string("gateway", out.gateway, true)) return;
  const std::string& g = out.gateway;
  size_t colon = g.rfind(':');
  if (!config::is_host_port(g) || colon == std::string::npos) {
    root.error("gateway", quote(g) + " is not \"host:port\" (e.g. \"gw.example.com:7443\" or "
                                     "\"[2001:db8::1]:7443\")");
    return;
  }
  std::string host = g.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  out.gateway_host = host;
  out.gateway_port = static_cast<uint16_t>(std::stoul(g.substr(colon + 1)));
}

void read_tls(ObjectReader& root, AgentConfig& out) {
  const rapidjson::Value* v = root.get_object("tls");
  if (v != nullptr) {
    ObjectReader r(root.diag(), *v, "tls");
    r.get_path("ca_file", out.dir, out.tls.ca_file);
    if (r.get_string("server_name", out.tls.server_name) && !config::is_host_name(out.tls.server_name))
      r.error("server_name", quote(out.tls.server_name) +
                                 " is not a host name or IP address (the name in the gateway's "
                                 "certificate, e.g. \"gw.example.com\")");
    r.get_bool("verify", out.tls.verify);
    r.get_bool("reverse_resumption", out.tls.reverse_resumption);
    r.finish();
  }
  if (out.tls.server_name.empty()) out.tls.server_name = out.gateway_host;
  if (!out.tls.verify)
    root.diag().warning("tls.verify", "false: the gateway's certificate is not checked, so anyone "
                                      "on the path can pose as the gateway and learn the "
                                      "secret; set it to true with tls.ca_file");
}

void read_source_address(ObjectReader& root, AgentConfig& out) {
  std::string text;
  if (!root.get_string("source_address", text)) return;
  std::string bare = text;
  if (bare.size() >= 2 && bare.front() == '[' && bare.back() == ']')
    bare = bare.substr(1, bare.size() - 2);
  SocketAddress sa;  // port 0: the kernel picks one
  auto* v4 = reinterpret_cast<sockaddr_in*>(&sa.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&sa.addr);
  if (inet_pton(AF_INET, bare.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    sa.len = sizeof *v4;
  } else if (inet_pton(AF_INET6, bare.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    sa.len = sizeof *v6;
  } else {
    root.error("source_address", quote(text) + " is not an IP address of this host (e.g. "
                                               "\"192.0.2.10\" or \"2001:db8::10\"; no port)");
    return;
  }
  sa.text = text;
  out.source_address = std::move(sa);
}


}  // namespace

bool parse_agent_config(const std::string& text, const std::string& path, AgentConfig& out,
                        Diagnostics& diag) {
  FileDiagnostics fd(path, diag);
  size_t errors_before = diag.errors.size();
  out = AgentConfig{};
  out.path = config::absolute_path(path);
  out.dir = config::parent_dir(out.path);

  rapidjson::Document doc;
  if (!config::parse_json(text, fd, doc)) return false;
  if (!doc.IsObject()) {
    fd.error("", std::string("the top level must be an object {...}, not ") +
                     config::json_type_name(doc) + " (see config/agent.json for an example)");
    return false;
  }
  ObjectReader root(fd, doc, "");
  read_gateway(root, out);
  if (root.get_string("id", out.id, true) && !agent::valid_agent_id(out.id))
    root.error("id", quote(out.id) + " is not an agent id (1-64 letters, digits, '-', '_', '.'; "
                                     "the id in the gateway's agents_file)");
  root.get_path("secret_file", out.dir, out.secret_file, true);
  read_tls(root, out);
  root.get_uint_as("idle_connections", out.idle_connections, 1, 1024);
  root.get_uint_as("workers", out.workers, 0, 1024);
  read_source_address(root, out);
  root.get_uint_as("connect_timeout_ms", out.connect_timeout_ms, 100, kMaxMs);
  root.get_uint_as("shutdown_grace_ms", out.shutdown_grace_ms, 0, kMaxMs);
  // The proxy's readers, on a Config of their own: the agent keeps only what they read.
  Config egress;
  config::read_dns_section(root, egress);
  config::read_acl_section(root, egress);
  out.acl = std::move(egress.acl);
  out.dns = std::move(egress.dns);
  root.finish();
  return diag.errors.size() == errors_before;
}

bool load_agent_config(const std::string& path, AgentConfig& out, Diagnostics& diag) {
  std::string text, err;
  if (!read_config_file(path, kDefaultMaxConfigFileBytes, text, err)) {
    diag.errors.push_back(path + ": " + err);
    return false;
  }
  if (!parse_agent_config(text, path, out, diag)) return false;
  std::string shown = config::display_path(out.secret_file);
  FileDiagnostics sfd(shown, diag);
  int fd = open(out.secret_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    sfd.error("", std::string("cannot open: ") + std::strerror(errno) + " (secret_file in " +
                      path + " points here)");
    return false;
  }
  struct stat st{};
  char buf[1024];
  ssize_t n = -1;
  // Checked on the opened file, so a swap between check and read cannot slip through.
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    sfd.error("", "is not a regular file (secret_file in " + path + " points here)");
  } else if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    sfd.error("", std::string("group or others may access it (mode ") + mode +
                      ") and it holds the agent's secret; run chmod 600 " + shown);
  } else {
    n = read(fd, buf, sizeof buf);
    if (n < 0) sfd.error("", std::string("cannot read: ") + std::strerror(errno));
  }
  close(fd);
  if (n < 0) return false;
  std::string secret(buf, static_cast<size_t>(n));
  secret = secret.substr(0, secret.find('\n'));
  if (!secret.empty() && secret.back() == '\r') secret.pop_back();
  if (secret.empty() || secret.size() > agent::max_secret || static_cast<size_t>(n) == sizeof buf) {
    sfd.error("", "the first line must be the agent's secret, 1-255 bytes (the one whose hash "
                  "the gateway's agents_file holds)");
    return false;
  }
  out.secret = std::move(secret);
  return true;
}

Config egress_config(const AgentConfig& a) {
  Config c;
  c.path = a.path;
  c.dir = a.dir;
  c.workers = a.workers;
  c.auth_required = false;
  c.acl = a.acl;
  c.dns = a.dns;
  c.source_address = a.source_address;
  c.upstream.connect_timeout_ms = a.connect_timeout_ms;
  c.access_log = "off";  // tunnels are logged with their tunnel id instead (agent/reverse_link.cpp)
  c.shutdown_grace_ms = a.shutdown_grace_ms;
  c.metrics_listen.reset();
  return c;
}

}  // namespace up
