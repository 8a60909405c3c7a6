#pragma once
// Server TLS contexts for TLS listeners, built on the management thread when a snapshot is
// built (start-up, reload): a cert or key that cannot be loaded, or a pair that does not
// match, is an error naming the file, and the old snapshot (with its contexts) keeps serving.
#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "uringproxy/config.h"

namespace up {

// `field` prefixes errors (e.g. `listeners[2] (https).tls`). ALPN `http/1.1` on http listeners.
std::shared_ptr<SSL_CTX> make_listener_tls_context(const ListenerConfig& l,
                                                   const std::string& field, std::string& err);

}  // namespace up
