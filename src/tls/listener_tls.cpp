#include "tls/listener_tls.h"

#include <openssl/err.h>

namespace up {

namespace {

std::string openssl_reason() {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (!e) return "unknown error";
  const char* r = ERR_reason_error_string(e);
  return r ? r : "unknown error";
}

int select_http11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                  unsigned int inlen, void*) {
  static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* sel = nullptr;
  if (SSL_select_next_proto(&sel, outlen, http11, sizeof http11, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;  // no ALPN agreement: carry on without one
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

std::shared_ptr<SSL_CTX> make_listener_tls_context(const ListenerConfig& l,
                                                   const std::string& field, std::string& err) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) {
    err = field + ": cannot create a TLS context: " + openssl_reason();
    return nullptr;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // An idle TLS tunnel gives its record buffers back (a few KiB each).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  const TlsServerFiles& f = *l.tls;
  if (SSL_CTX_use_certificate_chain_file(c, f.cert.c_str()) != 1) {
    err = field + ".cert: " + f.cert + ": cannot load the certificate chain (" +
          openssl_reason() + "); give a PEM file with the server certificate first";
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(c, f.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    err = field + ".key: " + f.key + ": cannot load the private key (" + openssl_reason() +
          "); give an unencrypted PEM key";
    return nullptr;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    err = field + ".key: " + f.key + ": does not match " + f.cert + " (" + openssl_reason() +
          "); give the key the certificate was issued for";
    return nullptr;
  }
  if (l.protocol == Protocol::http) SSL_CTX_set_alpn_select_cb(c, select_http11, nullptr);
  return ctx;
}

}  // namespace up
