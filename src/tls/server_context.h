#pragma once
// Server-side TLS for a listener: the SSL_CTX built from its `tls: {cert, key}`, and the
// session-ticket keys that its handshakes encrypt and decrypt tickets with. Connections use
// the context the way upstream/tls_layer.h's TlsLayer does: no sockets, the ring moves bytes.
#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace up {

// How often the management thread should call SessionTicketKeys::rotate. A ticket stays
// usable for one to two periods (current key, then previous); the lifetime the server
// advertises in each ticket is one period.
constexpr long ticket_key_rotation_seconds = 3600;

// A current key, which encrypts new tickets, and the previous one, which still decrypts
// tickets issued before the last rotation (and has them renewed under the current key).
// One set serves every listener's context, so tickets survive a certificate reload.
// rotate() runs on the management thread, the lookups on workers during handshakes.
class SessionTicketKeys {
 public:
  struct Key {
    uint8_t name[16];  // sent in the clear in each ticket, to find the key again
    uint8_t aes[32];   // AES-256-CBC
    uint8_t hmac[32];  // HMAC-SHA256
  };

  SessionTicketKeys();  // starts with one fresh key
  ~SessionTicketKeys();
  SessionTicketKeys(const SessionTicketKeys&) = delete;
  SessionTicketKeys& operator=(const SessionTicketKeys&) = delete;

  // previous = current, current = a fresh random key. False (keys unchanged) only if
  // RAND_bytes fails.
  bool rotate();

  // The key for a new ticket; false if there is none (no ticket is issued then).
  bool current(Key& out) const;
  // The key a ticket names: 1 = current, 2 = previous (renew the ticket), 0 = unknown.
  int find(const uint8_t name[16], Key& out) const;

 private:
  mutable std::mutex mu_;
  Key current_{};
  Key previous_{};
  bool has_current_ = false;
  bool has_previous_ = false;
};

// The one set of ticket keys every listener's context uses, in every snapshot (so tickets
// survive reloads); the management thread rotates it every ticket_key_rotation_seconds.
const std::shared_ptr<SessionTicketKeys>& listener_ticket_keys();

// A server context for one listener: TLS 1.2 and 1.3 only, the certificate chain from
// cert_file (PEM, server certificate first) and the unencrypted PEM key from key_file, checked
// to match; no renegotiation; `alpn` offered in preference order (the http listener passes
// {"http/1.1"}; empty = no ALPN; a client with no protocol in common gets none rather than an
// alert); session tickets under `ticket_keys` (null = no tickets, full handshakes only).
// Returns null and sets err to a message that starts with `field` (e.g. "listeners[2].tls")
// and names the file and the fix.
std::shared_ptr<SSL_CTX> make_server_tls_context(const std::string& cert_file,
                                                 const std::string& key_file,
                                                 const std::vector<std::string>& alpn,
                                                 std::shared_ptr<SessionTicketKeys> ticket_keys,
                                                 std::string_view field, std::string& err);

}  // namespace up
