#include "tls/server_context.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace up {

SessionTicketKeys::SessionTicketKeys() { rotate(); }

SessionTicketKeys::~SessionTicketKeys() {
  OPENSSL_cleanse(&current_, sizeof current_);
  OPENSSL_cleanse(&previous_, sizeof previous_);
}

bool SessionTicketKeys::rotate() {
  Key fresh;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&fresh), sizeof fresh) != 1) return false;
  std::lock_guard lock(mu_);
  previous_ = current_;
  has_previous_ = has_current_;
  current_ = fresh;
  has_current_ = true;
  OPENSSL_cleanse(&fresh, sizeof fresh);
  return true;
}

bool SessionTicketKeys::current(Key& out) const {
  std::lock_guard lock(mu_);
  if (!has_current_) return false;
  out = current_;
  return true;
}

int SessionTicketKeys::find(const uint8_t name[16], Key& out) const {
  std::lock_guard lock(mu_);
  if (has_current_ && std::memcmp(name, current_.name, sizeof current_.name) == 0) {
    out = current_;
    return 1;
  }
  if (has_previous_ && std::memcmp(name, previous_.name, sizeof previous_.name) == 0) {
    out = previous_;
    return 2;
  }
  return 0;
}

namespace {

// What the callbacks need, kept in the SSL_CTX's ex_data so that it lives exactly as long as
// the context: connections hold a reference to their SSL_CTX, and may outlive the listener's
// pointer to it after a reload swaps in a new one.
struct ContextData {
  std::shared_ptr<SessionTicketKeys> ticket_keys;
  std::vector<unsigned char> alpn;  // wire form: length-prefixed names
  EVP_CIPHER* ticket_cipher = nullptr;  // fetched once, not per ticket

  ~ContextData() { EVP_CIPHER_free(ticket_cipher); }
};

void free_context_data(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<ContextData*>(ptr);
}

int context_data_index() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_context_data);
  return index;
}

ContextData* context_data(SSL* ssl) {
  return static_cast<ContextData*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_data_index()));
}

int ticket_key_callback(SSL* ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                        EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  ContextData* d = context_data(ssl);
  if (d == nullptr || !d->ticket_keys) return 0;
  SessionTicketKeys::Key key;
  int found = 0;  // decrypting: 1 = the current key, 2 = the previous one
  if (enc) {
    if (!d->ticket_keys->current(key)) return 0;  // no ticket
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(d->ticket_cipher)) != 1) return -1;
    std::memcpy(key_name, key.name, sizeof key.name);
  } else {
    found = d->ticket_keys->find(key_name, key);
    if (found == 0) return 0;  // rotated out or never ours: a full handshake
  }
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac, sizeof key.hmac),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  int ok = enc ? EVP_EncryptInit_ex(cipher, d->ticket_cipher, nullptr, key.aes, iv)
               : EVP_DecryptInit_ex(cipher, d->ticket_cipher, nullptr, key.aes, iv);
  ok = ok == 1 && EVP_MAC_CTX_set_params(mac, params) == 1;
  OPENSSL_cleanse(&key, sizeof key);
  if (!ok) return -1;
  if (enc) return 2;
  // TLS 1.3: 2 on every successful decrypt, not only for the previous key: OpenSSL issues a
  // fresh ticket only then, and a TLS 1.3 client uses each ticket once (RFC 8446 C.4), so
  // without one a resumed connection would leave its client nothing to resume with next time.
  // TLS 1.2: renewed only once its key has rotated. OpenSSL's TLS 1.2 client, given a new
  // ticket, marks the session it resumed not resumable, and the agent's reverse links share
  // that session: renewing on every resumption cost them one full handshake in ten.
  return SSL_version(ssl) == TLS1_3_VERSION || found == 2 ? 2 : 1;
}

int alpn_select_callback(SSL*, const unsigned char** out, unsigned char* out_len,
                         const unsigned char* in, unsigned int in_len, void* arg) {
  const auto* d = static_cast<const ContextData*>(arg);
  unsigned char* selected = nullptr;
  unsigned char selected_len = 0;
  if (SSL_select_next_proto(&selected, &selected_len, d->alpn.data(),
                            static_cast<unsigned int>(d->alpn.size()), in,
                            in_len) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;  // no protocol in common: go on without ALPN
  *out = selected;
  *out_len = selected_len;
  return SSL_TLSEXT_ERR_OK;
}

// OpenSSL's reason for the last error, which it then forgets: the queue is per thread, and a
// stale entry would confuse the next SSL_get_error on this thread.
std::string openssl_reason() {
  unsigned long e = ERR_peek_last_error();
  const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
  ERR_clear_error();
  return reason != nullptr ? reason : "unknown OpenSSL error";
}

// Why a file cannot be opened, or "" if it can: errno's words beat OpenSSL's "system lib".
std::string open_error(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return std::strerror(errno);
  std::fclose(f);
  return "";
}

// PEM's passphrase prompt would block start-up on a terminal; refuse and remember it asked.
int no_passphrase(char*, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return 0;
}

}  // namespace

std::shared_ptr<SSL_CTX> make_server_tls_context(const std::string& cert_file,
                                                 const std::string& key_file,
                                                 const std::vector<std::string>& alpn,
                                                 std::shared_ptr<SessionTicketKeys> ticket_keys,
                                                 std::string_view field, std::string& err) {
  const std::string cert_field = std::string(field) + ".cert: " + cert_file + ": ";
  const std::string key_field = std::string(field) + ".key: " + key_file + ": ";
  ERR_clear_error();

  std::vector<unsigned char> alpn_wire;
  for (const std::string& name : alpn) {
    if (name.empty() || name.size() > 255) {
      err = std::string(field) + ": ALPN protocol \"" + name + "\" must be 1 to 255 bytes";
      return nullptr;
    }
    alpn_wire.push_back(static_cast<unsigned char>(name.size()));
    alpn_wire.insert(alpn_wire.end(), name.begin(), name.end());
  }

  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    err = std::string(field) + ": SSL_CTX_new failed (" + openssl_reason() + ")";
    return nullptr;
  }
  std::shared_ptr<SSL_CTX> holder(ctx, SSL_CTX_free);
  auto owned = std::make_unique<ContextData>();
  if (SSL_CTX_set_ex_data(ctx, context_data_index(), owned.get()) != 1) {
    err = std::string(field) + ": SSL_CTX_set_ex_data failed (" + openssl_reason() + ")";
    return nullptr;
  }
  ContextData* data = owned.release();  // freed with ctx from here on
  data->ticket_keys = std::move(ticket_keys);
  data->alpn = std::move(alpn_wire);

  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // Renegotiation lets a client make the server redo the costly half of a handshake at will,
  // and nothing we serve needs it.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  // An idle TLS tunnel gives its record buffers back (a few KiB each).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

  if (std::string why = open_error(cert_file); !why.empty()) {
    err = cert_field + "cannot open (" + why + "); check the path and that the proxy may read it";
    return nullptr;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    err = cert_field + "not a PEM certificate chain (" + openssl_reason() +
          "); expected -----BEGIN CERTIFICATE----- blocks, the server's own first";
    return nullptr;
  }

  if (std::string why = open_error(key_file); !why.empty()) {
    err = key_field + "cannot open (" + why + "); check the path and that the proxy may read it";
    return nullptr;
  }
  bool asked_passphrase = false;
  EVP_PKEY* key = nullptr;
  if (BIO* bio = BIO_new_file(key_file.c_str(), "r")) {
    key = PEM_read_bio_PrivateKey(bio, nullptr, no_passphrase, &asked_passphrase);
    BIO_free(bio);
  }
  if (key == nullptr) {
    std::string reason = openssl_reason();
    err = asked_passphrase
              ? key_field + "is encrypted; remove the passphrase (openssl pkey -in " + key_file +
                    " -out <new file>) and point tls.key at the result"
              : key_field + "not a PEM private key (" + reason +
                    "); expected -----BEGIN PRIVATE KEY----- (are cert and key swapped?)";
    return nullptr;
  }
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_holder(key, EVP_PKEY_free);
  // Checked against the leaf first: SSL_CTX_use_PrivateKey files a key of another type under
  // a slot with no certificate, and the later check would only say "no certificate assigned".
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  if (leaf == nullptr || X509_check_private_key(leaf, key) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    err = key_field + "does not match " + cert_file + " (" + openssl_reason() +
          "); use the key the certificate was issued for";
    return nullptr;
  }

  if (!data->alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, alpn_select_callback, data);

  if (data->ticket_keys) {
    data->ticket_cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
    if (data->ticket_cipher == nullptr ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_callback) != 1) {
      err = std::string(field) + ": session tickets: " + openssl_reason();
      return nullptr;
    }
    SSL_CTX_set_timeout(ctx, ticket_key_rotation_seconds);
  } else {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
  }
  // Resumption is by ticket only: a server-side cache would grow with every client and is not
  // shared between workers' contexts anyway.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  ERR_clear_error();
  return holder;
}

const std::shared_ptr<SessionTicketKeys>& listener_ticket_keys() {
  static const std::shared_ptr<SessionTicketKeys> keys = std::make_shared<SessionTicketKeys>();
  return keys;
}

}  // namespace up
