#pragma once
// One control request line (docs/control-protocol.md) to a command name and its arguments.
// Pure: no I/O and no daemon state, so unit tests and a fuzzer drive it directly; the
// management thread frames lines and dispatches.
#include "config/rapidjson.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace up {

// The longest request line. The management thread stops buffering past it; the parser refuses
// a longer line that arrived whole.
inline constexpr size_t max_request_bytes = 64 * 1024;

struct ControlRequest {
  std::string cmd;             // non-empty, no NUL
  rapidjson::Document args;    // the whole request object, "cmd" included
};

// "request longer than 65536 bytes": the refusal for an oversized line, from either place.
std::string request_too_long_error();

// The request, or nullopt with `error` set to the sentence the client gets back. The whole of
// `line` is the document: bytes after the object (a NUL included) are refused. Duplicate keys
// are kept as rapidjson keeps them, and lookups find the first.
std::optional<ControlRequest> parse_control_request(std::string_view line, std::string& error);

}  // namespace up
