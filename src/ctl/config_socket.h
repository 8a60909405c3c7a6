#pragma once
// Where the control socket is: --socket, else the config file's control.socket (relative to the
// config file's directory), else run/control.sock.
#include <string>

namespace up::ctl {

// Reads `config_file` and sets `socket` to its control.socket, resolved absolute (default
// <config dir>/run/control.sock). Only the JSON syntax and the control section matter here:
// other problems in the file are the daemon's to report. On failure sets `error`.
bool socket_from_config(const std::string& config_file, std::string& socket, std::string& error);

}  // namespace up::ctl
