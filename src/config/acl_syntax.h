#pragma once
// The written form of an ACL entry (docs/configuration.md): a CIDR, an exact host (name or IP literal), or
// "*.suffix". Matching is the router's job; this only says whether an entry makes sense.
#include <string>

namespace up::config {

// "" when the entry is well formed, else the reason and the fix as a sentence fragment.
std::string check_acl_entry(const std::string& entry);

}  // namespace up::config
