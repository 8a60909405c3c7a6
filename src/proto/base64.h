#pragma once
// Standard base64 (RFC 4648 section 4) for HTTP Basic credentials. Internal to src/proto.
#include <string>
#include <string_view>

namespace up::base64 {

std::string encode(std::string_view in);
// Strict alphabet; padding optional but, when present, correct. False on anything else.
bool decode(std::string_view in, std::string& out);

}  // namespace up::base64
