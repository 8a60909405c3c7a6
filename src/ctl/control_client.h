#pragma once
// One request on the daemon's control socket: connect, send one JSON line, read one line back.
#include <string>

namespace up::ctl {

struct Exchange {
  std::string answer;  // the answer line, without its newline
  std::string error;   // why there is no answer: "cannot connect to PATH: ...", a timeout, ...
};

// Sends `request` (one JSON object, no newline) and waits up to `timeout_ms` in total for the
// answer line. Returns false with `error` set when the daemon could not be reached or did not
// answer.
bool exchange(const std::string& socket_path, const std::string& request, int timeout_ms,
              Exchange& out);

}  // namespace up::ctl
