// The one list of accepted-but-not-yet-implemented fields. Loaders call warn_unlanded() when
// one of these is set to a value that would make its feature act; delete a row when its feature
// lands and the warning disappears everywhere.
#include "config/unlanded.h"

#include <array>
#include <cstring>

namespace up::config {

namespace {

struct UnlandedField {
  const char* field;        // table key, "[]" standing for any index or name
  const char* feature;      // "... are not implemented yet"
  const char* consequence;  // what the operator gets meanwhile
};

// Empty since VLESS and TLS listeners landed; kept for the next feature that is accepted
// before it is built.
constexpr std::array<UnlandedField, 0> kUnlanded{};

const UnlandedField* lookup(const char* field) {
  for (const UnlandedField& u : kUnlanded)
    if (std::strcmp(u.field, field) == 0) return &u;
  return nullptr;
}

}  // namespace

void warn_unlanded(FileDiagnostics& fd, const char* field, const std::string& where) {
  const UnlandedField* u = lookup(field);
  if (u == nullptr) return;
  fd.warning(where, std::string("accepted, but ") + u->feature + " not implemented yet; " +
                        u->consequence);
}

bool is_unlanded(const char* field) { return lookup(field) != nullptr; }

}  // namespace up::config
