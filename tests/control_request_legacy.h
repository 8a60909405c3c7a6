#pragma once
// The oracle the control-request parser is checked against, by its unit tests and its fuzzer:
// what Management::handle did before the parser stood alone.
#include <string>

#include "control/control_request.h"

namespace up::testing {

inline const char kRequestShape[] = "a request is {\"cmd\": \"...\", ...}";

// The refusal the old code gave, or "" with the document it dispatched on in `doc`.
inline std::string legacy_refusal(const std::string& line, rapidjson::Document& doc) {
  doc.Parse(line.c_str(), line.size());
  if (doc.HasParseError())
    return std::string("invalid JSON at offset ") + std::to_string(doc.GetErrorOffset()) + ": " +
           rapidjson::GetParseError_En(doc.GetParseError());
  const rapidjson::Value& d = doc;
  if (!d.IsObject() || !d.HasMember("cmd") || !d["cmd"].IsString()) return kRequestShape;
  return "";
}

}  // namespace up::testing
