#pragma once
// "on_failure": "reject" | "direct" | the id of another upstream (docs/configuration.md#route-selection).
#include <string>

#include "config/json_reader.h"
#include "uringproxy/config.h"

namespace up::config {

// Reads reader[key] into out; an upstream id is only checked for shape here, its existence
// where the proxies are known.
void read_on_failure(ObjectReader& reader, const char* key, OnFailure& out);

// The written form: "reject", "direct", the id; "" for unset.
std::string on_failure_text(const OnFailure& f);

}  // namespace up::config
