#include "ctl/execute.h"

#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "ctl/config_socket.h"
#include "ctl/control_client.h"
#include "ctl/json_get.h"
#include "ctl/render.h"

namespace up::ctl {
namespace {

constexpr const char* kDefaultSocket = "run/control.sock";

std::string absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

bool resolve_socket(const Target& t, std::string& path) {
  if (!t.socket.empty()) {
    path = t.socket;
    return true;
  }
  if (!t.config.empty()) {
    std::string error;
    if (!socket_from_config(t.config, path, error)) {
      fprintf(stderr, "uringproxyctl: %s\n", error.c_str());
      return false;
    }
    return true;
  }
  path = kDefaultSocket;
  return true;
}

}  // namespace

int execute(const Target& target, Request& req) {
  std::string path;
  if (!resolve_socket(target, path)) return kExitUsage;
  // Relative paths are shown absolute so the operator sees where we looked.
  std::string shown = absolute(path);
  if (shown.size() < 108) path = shown;

  Exchange ex;
  if (!exchange(path, req.line(), target.timeout_ms, ex)) {
    fprintf(stderr, "uringproxyctl: %s\n", ex.error.c_str());
    return kExitUsage;
  }
  rapidjson::Document answer;
  answer.Parse(ex.answer.data(), ex.answer.size());
  if (answer.HasParseError() || !answer.IsObject() || !member(answer, "ok") ||
      !answer["ok"].IsBool()) {
    std::string head = ex.answer.substr(0, 300);
    fprintf(stderr, "uringproxyctl: the daemon's answer is not a JSON object with \"ok\": %s\n",
            head.c_str());
    return kExitUsage;
  }
  bool ok = answer["ok"].GetBool();
  if (target.json) {
    fwrite(ex.answer.data(), 1, ex.answer.size(), stdout);
    fputc('\n', stdout);
    if (!ok) render_refusal(req.cmd(), answer, stderr);
  } else if (ok) {
    rapidjson::Document request;
    request.Parse(req.line().data(), req.line().size());
    if (request.IsObject()) request.RemoveMember("password");
    render_ok(req.cmd(), request, answer, stdout);
  } else {
    render_refusal(req.cmd(), answer, stderr);
  }
  if (fflush(stdout) != 0) return kExitUsage;
  return ok ? kExitOk : kExitRefused;
}

}  // namespace up::ctl
