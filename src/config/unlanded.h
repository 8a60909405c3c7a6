#pragma once
// Fields the loader accepts although their feature has not landed yet (see unlanded.cpp).
#include <string>

#include "config/json_reader.h"

namespace up::config {

// Warns "<file>: <where>: accepted, but <feature> ...; <consequence>" when `field` (a table key
// such as "listeners[].tls") is in the table; silent once the feature has landed.
void warn_unlanded(FileDiagnostics& fd, const char* field, const std::string& where);

// Whether the table still lists the field (for tests).
bool is_unlanded(const char* field);

}  // namespace up::config
