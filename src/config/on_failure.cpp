#include "config/on_failure.h"

namespace up::config {

void read_on_failure(ObjectReader& reader, const char* key, OnFailure& out) {
  std::string v;
  if (!reader.has(key)) {
    reader.find(key);
    return;
  }
  if (!reader.get_string(key, v, false, true)) return;
  if (v == "reject") {
    out = {OnFailure::Kind::reject, {}};
  } else if (v == "direct") {
    out = {OnFailure::Kind::direct, {}};
  } else if (v.empty() || v.find_first_of(std::string(" \t\r\n\0", 5)) != std::string::npos) {
    reader.error(key, quote(v) + " is not \"reject\", \"direct\" or the id of an upstream proxy");
  } else {
    out = {OnFailure::Kind::upstream, v};
  }
}

std::string on_failure_text(const OnFailure& f) {
  switch (f.kind) {
    case OnFailure::Kind::unset: return "";
    case OnFailure::Kind::reject: return "reject";
    case OnFailure::Kind::direct: return "direct";
    case OnFailure::Kind::upstream: return f.upstream_id;
  }
  return "";
}

}  // namespace up::config
