// uringproxyctl --config FILE: the control socket named by the daemon's own config file,
// read with the daemon's parser so comments, trailing commas and relative paths agree.
#include "ctl/config_socket.h"

#include "uringproxy/config.h"

namespace up::ctl {

bool socket_from_config(const std::string& config_file, std::string& socket, std::string& error) {
  std::string text, why;
  if (!read_config_file(config_file, kDefaultMaxConfigFileBytes, text, why)) {
    error = "cannot read config " + config_file + ": " + why;
    return false;
  }
  Config cfg;
  Diagnostics diag;
  parse_config(text, config_file, cfg, diag);
  // A syntax error leaves control_socket empty; an error inside "control" is ours to report.
  std::string control_errors;
  for (const auto& e : diag.errors) {
    if (cfg.control_socket.empty() || e.find("control") != std::string::npos)
      control_errors += (control_errors.empty() ? "" : "\n") + e;
  }
  if (cfg.control_socket.empty() || !control_errors.empty()) {
    error = control_errors.empty() ? config_file + ": no control socket could be read"
                                   : control_errors;
    return false;
  }
  socket = cfg.control_socket;
  return true;
}

}  // namespace up::ctl
