#include "control/control_request.h"

#include <cstring>

namespace up {

namespace {

std::string json_error(size_t offset, rapidjson::ParseErrorCode code) {
  return "invalid JSON at offset " + std::to_string(offset) + ": " +
         rapidjson::GetParseError_En(code);
}

}  // namespace

std::string request_too_long_error() {
  return "request longer than " + std::to_string(max_request_bytes) + " bytes";
}

std::optional<ControlRequest> parse_control_request(std::string_view line, std::string& error) {
  if (line.size() > max_request_bytes) {
    error = request_too_long_error();
    return std::nullopt;
  }
  ControlRequest req;
  rapidjson::Document& d = req.args;
  // The stream Document::Parse(str, len) reads through (it skips a UTF-8 BOM), so offsets in
  // errors are what clients always saw. Iterative: no recursion, so 64 KiB of '[' is just an
  // error. It stops after the root value and the rest of the line is checked here, since
  // rapidjson would take a NUL there for the end of input.
  constexpr unsigned kFlags = rapidjson::kParseIterativeFlag | rapidjson::kParseStopWhenDoneFlag;
  rapidjson::MemoryStream ms(line.data(), line.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> is(ms);
  d.ParseStream<kFlags, rapidjson::UTF8<>>(is);
  if (d.HasParseError()) {
    // The iterative parser calls a line that opens with '}' or ',' empty; the recursive one
    // Management used said "Invalid value", and clients keep getting that.
    size_t at = d.GetErrorOffset();
    rapidjson::ParseErrorCode code = d.GetParseError();
    if (code == rapidjson::kParseErrorDocumentEmpty && at < line.size() && line[at] != '\0')
      code = rapidjson::kParseErrorValueInvalid;
    error = json_error(at, code);
    return std::nullopt;
  }
  rapidjson::SkipWhitespace(is);
  if (is.Tell() != line.size()) {
    error = json_error(is.Tell(), rapidjson::kParseErrorDocumentRootNotSingular);
    return std::nullopt;
  }
  // An empty name, or one cut short by \u0000, names no command.
  // Looked up through a const reference: C++20 finds rapidjson's mutable iterators ambiguous.
  const rapidjson::Value& root = d;
  const rapidjson::Value* cmd = nullptr;
  if (root.IsObject()) {
    auto it = root.FindMember("cmd");
    if (it != root.MemberEnd() && it->value.IsString()) cmd = &it->value;
  }
  if (!cmd || cmd->GetStringLength() == 0 ||
      std::memchr(cmd->GetString(), '\0', cmd->GetStringLength())) {
    error = "a request is {\"cmd\": \"...\", ...}";
    return std::nullopt;
  }
  req.cmd.assign(cmd->GetString(), cmd->GetStringLength());
  return req;
}

}  // namespace up
