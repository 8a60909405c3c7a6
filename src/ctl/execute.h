#pragma once
// Sending one request and turning the answer into output and an exit code.
#include <string>

#include "ctl/request.h"

namespace up::ctl {

// Exit codes (docs/uringproxyctl.md).
constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;  // the daemon answered ok:false
constexpr int kExitUsage = 2;    // bad arguments, or the daemon could not be reached

struct Target {
  std::string socket;  // --socket
  std::string config;  // --config
  bool json = false;
  int timeout_ms = 30000;
};

// Resolves the socket, sends `req`, prints the answer (as is with --json, else for humans) and
// returns the exit code.
int execute(const Target& target, Request& req);

}  // namespace up::ctl
