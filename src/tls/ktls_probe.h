#pragma once
// Whether this kernel can do the TLS record layer itself (kTLS): the "tls" TCP upper-layer
// protocol must exist. Probed once at start-up; the answer is logged, shown by `status` and
// exported as uringproxy_ktls_available.
#include <string>

namespace up {

struct KtlsSupport {
  bool available = false;
  std::string why;  // for the start-up log
};

KtlsSupport probe_ktls();

}  // namespace up
