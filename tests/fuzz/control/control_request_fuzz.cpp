// Fuzzes src/control/control_request.cpp: every line gets a request or a refusal sentence, and
// (NUL bytes and empty names aside) exactly the answer Management::handle gave before it had a
// parser of its own: the same refusal, or the same command on the same arguments.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "control/control_request.h"

#include "../../control_request_legacy.h"
#include "../proto/fuzz_assert.h"

namespace {

using up::testing::legacy_refusal;
constexpr const char* kShape = up::testing::kRequestShape;

// Member by member in order: rapidjson's operator== looks keys up, so it calls two equal
// objects with a duplicate key different.
bool same(const rapidjson::Value& a, const rapidjson::Value& b) {
  if (a.GetType() != b.GetType()) return false;
  if (a.IsString())
    return std::string_view(a.GetString(), a.GetStringLength()) ==
           std::string_view(b.GetString(), b.GetStringLength());
  if (a.IsArray()) {
    if (a.Size() != b.Size()) return false;
    for (rapidjson::SizeType i = 0; i < a.Size(); ++i)
      if (!same(a[i], b[i])) return false;
    return true;
  }
  if (a.IsObject()) {
    if (a.MemberCount() != b.MemberCount()) return false;
    for (auto i = a.MemberBegin(), j = b.MemberBegin(); i != a.MemberEnd(); ++i, ++j)
      if (!same(i->name, j->name) || !same(i->value, j->value)) return false;
    return true;
  }
  if (a.IsNumber() && (a.IsDouble() != b.IsDouble() || a.IsInt64() != b.IsInt64() ||
                       a.IsUint64() != b.IsUint64()))
    return false;
  return a == b;  // numbers, booleans, null
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string line(reinterpret_cast<const char*>(data), size);
  std::string error;
  std::optional<up::ControlRequest> req = up::parse_control_request(line, error);

  if (!req) {
    FUZZ_ASSERT(!error.empty());
    if (size > up::max_request_bytes) FUZZ_ASSERT(error == up::request_too_long_error());
  } else {
    FUZZ_ASSERT(error.empty());
    FUZZ_ASSERT(size <= up::max_request_bytes);
    FUZZ_ASSERT(!req->cmd.empty() && req->cmd.find('\0') == std::string::npos);
    FUZZ_ASSERT(req->args.IsObject());
    const rapidjson::Value& args = req->args;
    auto it = args.FindMember("cmd");
    FUZZ_ASSERT(it != args.MemberEnd() && it->value.IsString());
    FUZZ_ASSERT(std::string_view(it->value.GetString(), it->value.GetStringLength()) == req->cmd);
    // A raw NUL can only sit inside the document, where rapidjson would have stopped on it.
    FUZZ_ASSERT(line.find('\0') == std::string::npos);
  }

  // The same verdict as before, where the old code could not be fooled by a NUL.
  if (size > up::max_request_bytes || line.find('\0') != std::string::npos) return 0;
  rapidjson::Document old;
  std::string want = legacy_refusal(line, old);
  if (!want.empty()) {
    FUZZ_ASSERT(!req && error == want);
    return 0;
  }
  const rapidjson::Value& cmd = old["cmd"];
  if (cmd.GetStringLength() == 0 || std::memchr(cmd.GetString(), '\0', cmd.GetStringLength())) {
    FUZZ_ASSERT(!req && error == kShape);
    return 0;
  }
  FUZZ_ASSERT(req && req->cmd == cmd.GetString());
  FUZZ_ASSERT(same(req->args, old));  // every argument as the commands saw it
  return 0;
}
