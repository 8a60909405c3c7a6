#pragma once
// Rules for single users.json fields, shared by the loader and live edits (uringproxyctl user add).
#include <string>

namespace up::config {

// "" when the name is usable, else the reason and fix: non-empty, at most 64 bytes, no '.', ':',
// whitespace or control characters.
std::string check_username(const std::string& name);

// Validates an 8-4-4-4-12 hex UUID and writes its lower-case form.
bool normalise_uuid(const std::string& in, std::string& out);

}  // namespace up::config
