// Tests for src/tls/server_context.cpp: loading and checking cert/key pairs, and real
// handshakes between a client SSL and a server SSL over memory BIOs.
#include "tls/server_context.h"

#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using up::SessionTicketKeys;

// A throw-away PKI in a temporary directory: a self-signed P-256 certificate and its key,
// a second key of the same type and one of another type (neither matches the certificate).
struct TestPki {
  std::string dir;
  std::string cert, key, other_key, ed25519_key, encrypted_key;

  TestPki() {
    char tmpl[] = "/tmp/uringproxy-tls-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    cert = dir + "/server.pem";
    key = dir + "/server.key";
    other_key = dir + "/other.key";
    ed25519_key = dir + "/ed25519.key";
    encrypted_key = dir + "/encrypted.key";

    EVP_PKEY* k = EVP_EC_gen("P-256");
    REQUIRE(k != nullptr);
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    REQUIRE(X509_sign(x, k, EVP_sha256()) > 0);
    write(cert, [&](FILE* f) { return PEM_write_X509(f, x); });
    write(key, [&](FILE* f) {
      return PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr);
    });
    char pass[] = "secret";
    write(encrypted_key, [&](FILE* f) {
      return PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(), nullptr, 0, nullptr, pass);
    });
    X509_free(x);
    EVP_PKEY_free(k);

    EVP_PKEY* other = EVP_EC_gen("P-256");
    write(other_key, [&](FILE* f) {
      return PEM_write_PrivateKey(f, other, nullptr, nullptr, 0, nullptr, nullptr);
    });
    EVP_PKEY_free(other);
    EVP_PKEY* ed = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    write(ed25519_key, [&](FILE* f) {
      return PEM_write_PrivateKey(f, ed, nullptr, nullptr, 0, nullptr, nullptr);
    });
    EVP_PKEY_free(ed);
  }
  ~TestPki() { std::filesystem::remove_all(dir); }

  template <class F>
  static void write(const std::string& path, F f) {
    FILE* fp = std::fopen(path.c_str(), "w");
    REQUIRE(fp != nullptr);
    CHECK(f(fp) == 1);
    std::fclose(fp);
  }
};

std::shared_ptr<SSL_CTX> server_ctx(const TestPki& pki, std::vector<std::string> alpn,
                                    std::shared_ptr<SessionTicketKeys> keys) {
  std::string err;
  auto ctx = up::make_server_tls_context(pki.cert, pki.key, alpn, std::move(keys),
                                         "listeners[0].tls", err);
  REQUIRE_MESSAGE(ctx, err);
  CHECK(err.empty());
  return ctx;
}

std::string load_error(const std::string& cert, const std::string& key) {
  std::string err;
  auto ctx = up::make_server_tls_context(cert, key, {}, nullptr, "listeners[2].tls", err);
  CHECK_FALSE(ctx);
  CHECK(ERR_peek_error() == 0);  // nothing left on this thread's error queue
  return err;
}

struct ClientOptions {
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  std::string alpn{};  // one protocol, or none
  SSL_SESSION* resume = nullptr;
};

// What a handshake came to, from both sides.
struct Outcome {
  bool ok = false;
  int version = 0;
  bool resumed = false;
  std::string alpn;                // as the server selected it
  std::string client_alpn;         // as the client saw it
  unsigned long server_error = 0;  // the server's OpenSSL error, if it failed
  SSL_SESSION* session = nullptr;  // the client's, after reading any tickets; caller frees
};

// One side's SSL with the two memory BIOs a connection would use.
struct Side {
  SSL* ssl = nullptr;
  BIO* in = nullptr;
  BIO* out = nullptr;
  explicit Side(SSL_CTX* ctx) : ssl(SSL_new(ctx)), in(BIO_new(BIO_s_mem())),
                                out(BIO_new(BIO_s_mem())) {
    BIO_set_mem_eof_return(in, -1);
    SSL_set_bio(ssl, in, out);
  }
  ~Side() { SSL_free(ssl); }
};

// Moves all pending ciphertext from one side to the other; true if anything moved.
bool transfer(Side& from, Side& to) {
  char buf[16384];
  bool moved = false;
  int n;
  while ((n = BIO_read(from.out, buf, sizeof buf)) > 0) {
    BIO_write(to.in, buf, n);
    moved = true;
  }
  return moved;
}

Outcome handshake(SSL_CTX* server, const ClientOptions& opt = {}) {
  std::shared_ptr<SSL_CTX> cctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX_set_min_proto_version(cctx.get(), opt.min_version);
  SSL_CTX_set_max_proto_version(cctx.get(), opt.max_version);
  // Lets the client offer old versions at all, so that the refusal is the server's.
  SSL_CTX_set_cipher_list(cctx.get(), "DEFAULT:@SECLEVEL=0");
  SSL_CTX_set_verify(cctx.get(), SSL_VERIFY_NONE, nullptr);
  Side c(cctx.get());
  Side s(server);
  SSL_set_connect_state(c.ssl);
  SSL_set_accept_state(s.ssl);
  if (!opt.alpn.empty()) {
    std::vector<unsigned char> wire{static_cast<unsigned char>(opt.alpn.size())};
    wire.insert(wire.end(), opt.alpn.begin(), opt.alpn.end());
    SSL_set_alpn_protos(c.ssl, wire.data(), static_cast<unsigned>(wire.size()));
  }
  if (opt.resume) SSL_set_session(c.ssl, opt.resume);

  Outcome o;
  bool client_done = false, server_done = false, failed = false;
  for (int round = 0; round < 20 && !(client_done && server_done) && !failed; ++round) {
    ERR_clear_error();
    int r = SSL_do_handshake(c.ssl);
    if (r == 1) client_done = true;
    else if (SSL_get_error(c.ssl, r) != SSL_ERROR_WANT_READ) failed = true;
    transfer(c, s);
    ERR_clear_error();
    r = SSL_do_handshake(s.ssl);
    if (r == 1) {
      server_done = true;
    } else if (SSL_get_error(s.ssl, r) != SSL_ERROR_WANT_READ) {
      o.server_error = ERR_peek_last_error();
      failed = true;
    }
    transfer(s, c);
  }
  ERR_clear_error();
  if (failed || !client_done || !server_done) return o;
  // TLS 1.3 tickets come after the handshake: reading makes the client take them.
  char byte;
  CHECK(SSL_read(c.ssl, &byte, 1) <= 0);
  CHECK(SSL_get_error(c.ssl, -1) == SSL_ERROR_WANT_READ);
  ERR_clear_error();

  o.ok = true;
  o.version = SSL_version(s.ssl);
  o.resumed = SSL_session_reused(s.ssl) == 1;
  CHECK(o.resumed == (SSL_session_reused(c.ssl) == 1));
  const unsigned char* sel = nullptr;
  unsigned int sel_len = 0;
  SSL_get0_alpn_selected(s.ssl, &sel, &sel_len);
  o.alpn.assign(reinterpret_cast<const char*>(sel), sel ? sel_len : 0);
  SSL_get0_alpn_selected(c.ssl, &sel, &sel_len);
  o.client_alpn.assign(reinterpret_cast<const char*>(sel), sel ? sel_len : 0);
  o.session = SSL_get1_session(c.ssl);
  // A clean close: OpenSSL marks the session of an SSL freed without one not resumable.
  SSL_shutdown(c.ssl);
  transfer(c, s);
  SSL_shutdown(s.ssl);
  ERR_clear_error();
  return o;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("server context: a matching pair loads with TLS 1.2..1.3 and no renegotiation") {
  TestPki pki;
  auto ctx = server_ctx(pki, {}, nullptr);
  CHECK(SSL_CTX_get_min_proto_version(ctx.get()) == TLS1_2_VERSION);
  CHECK(SSL_CTX_get_max_proto_version(ctx.get()) == TLS1_3_VERSION);
  CHECK((SSL_CTX_get_options(ctx.get()) & SSL_OP_NO_RENEGOTIATION) != 0);
  CHECK((SSL_CTX_get_mode(ctx.get()) & SSL_MODE_RELEASE_BUFFERS) != 0);
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("server context: load errors name the field, the file and the fix") {
  TestPki pki;
  std::string missing = pki.dir + "/missing.pem";

  std::string err = load_error(missing, pki.key);
  CHECK(err == "listeners[2].tls.cert: " + missing +
                   ": cannot open (No such file or directory); check the path and that the "
                   "proxy may read it");

  err = load_error(pki.cert, pki.dir + "/missing.key");
  CHECK(contains(err, "listeners[2].tls.key: " + pki.dir + "/missing.key: cannot open ("));

  err = load_error(pki.key, pki.key);  // a key where the certificate belongs
  CHECK(contains(err, "listeners[2].tls.cert: " + pki.key + ": not a PEM certificate chain ("));

  err = load_error(pki.cert, pki.cert);  // a certificate where the key belongs
  CHECK(contains(err, "listeners[2].tls.key: " + pki.cert + ": not a PEM private key ("));

  err = load_error(pki.cert, pki.encrypted_key);
  CHECK(contains(err, "listeners[2].tls.key: " + pki.encrypted_key +
                          ": is encrypted; remove the passphrase"));

  std::string empty_alpn;
  auto ctx = up::make_server_tls_context(pki.cert, pki.key, {""}, nullptr, "listeners[1].tls",
                                         empty_alpn);
  CHECK_FALSE(ctx);
  CHECK(contains(empty_alpn, "listeners[1].tls: ALPN protocol"));
}

TEST_CASE("server context: a key that does not match the certificate is refused") {
  TestPki pki;
  std::string err = load_error(pki.cert, pki.other_key);
  CHECK(err == "listeners[2].tls.key: " + pki.other_key + ": does not match " + pki.cert +
                   " (key values mismatch); use the key the certificate was issued for");
  err = load_error(pki.cert, pki.ed25519_key);
  CHECK(err == "listeners[2].tls.key: " + pki.ed25519_key + ": does not match " + pki.cert +
                   " (key type mismatch); use the key the certificate was issued for");
}

TEST_CASE("handshake: TLS 1.3 with ALPN http/1.1") {
  TestPki pki;
  auto ctx = server_ctx(pki, {"http/1.1"}, nullptr);
  Outcome o = handshake(ctx.get(), {.alpn = "http/1.1"});
  REQUIRE(o.ok);
  CHECK(o.version == TLS1_3_VERSION);
  CHECK(o.alpn == "http/1.1");
  CHECK(o.client_alpn == "http/1.1");
  SSL_SESSION_free(o.session);

  // A client with no protocol in common still gets through, without ALPN.
  o = handshake(ctx.get(), {.alpn = "h2"});
  REQUIRE(o.ok);
  CHECK(o.alpn.empty());
  SSL_SESSION_free(o.session);

  // A listener with no ALPN list selects none.
  auto plain = server_ctx(pki, {}, nullptr);
  o = handshake(plain.get(), {.alpn = "http/1.1"});
  REQUIRE(o.ok);
  CHECK(o.alpn.empty());
  SSL_SESSION_free(o.session);
}

TEST_CASE("handshake: TLS 1.2 is served, TLS 1.1 is refused by the server") {
  TestPki pki;
  auto ctx = server_ctx(pki, {}, nullptr);
  Outcome o = handshake(ctx.get(), {.max_version = TLS1_2_VERSION});
  REQUIRE(o.ok);
  CHECK(o.version == TLS1_2_VERSION);
  SSL_SESSION_free(o.session);

  o = handshake(ctx.get(), {.min_version = TLS1_1_VERSION, .max_version = TLS1_1_VERSION});
  CHECK_FALSE(o.ok);
  CHECK(ERR_GET_REASON(o.server_error) == SSL_R_UNSUPPORTED_PROTOCOL);
}

TEST_CASE("handshake: renegotiation is refused both ways") {
  TestPki pki;
  auto ctx = server_ctx(pki, {}, nullptr);
  std::shared_ptr<SSL_CTX> cctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX_set_max_proto_version(cctx.get(), TLS1_2_VERSION);
  Side c(cctx.get());
  Side s(ctx.get());
  SSL_set_connect_state(c.ssl);
  SSL_set_accept_state(s.ssl);
  for (int i = 0; i < 10; ++i) {
    SSL_do_handshake(c.ssl);
    transfer(c, s);
    SSL_do_handshake(s.ssl);
    transfer(s, c);
  }
  REQUIRE(SSL_is_init_finished(c.ssl));
  REQUIRE(SSL_is_init_finished(s.ssl));
  CHECK(SSL_renegotiate(s.ssl) == 0);  // the server never starts one

  // The client asks; the server answers no_renegotiation and the client gives up.
  REQUIRE(SSL_renegotiate(c.ssl) == 1);
  unsigned long client_error = 0;
  for (int i = 0; i < 10 && client_error == 0; ++i) {
    ERR_clear_error();
    int r = SSL_do_handshake(c.ssl);
    if (r != 1 && SSL_get_error(c.ssl, r) == SSL_ERROR_SSL) client_error = ERR_peek_last_error();
    transfer(c, s);
    char buf[16];
    CHECK(SSL_read(s.ssl, buf, sizeof buf) <= 0);
    transfer(s, c);
  }
  CHECK(ERR_GET_REASON(client_error) == SSL_R_NO_RENEGOTIATION);
  ERR_clear_error();
}

TEST_CASE("session tickets: resume, survive one rotation, not two") {
  TestPki pki;
  auto keys = std::make_shared<SessionTicketKeys>();
  auto ctx = server_ctx(pki, {"http/1.1"}, keys);
  for (int max_version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(max_version);
    Outcome first = handshake(ctx.get(), {.max_version = max_version});
    REQUIRE(first.ok);
    CHECK_FALSE(first.resumed);
    REQUIRE(first.session != nullptr);
    REQUIRE(SSL_SESSION_is_resumable(first.session));
    CHECK(SSL_SESSION_get_ticket_lifetime_hint(first.session) ==
          static_cast<unsigned long>(up::ticket_key_rotation_seconds));

    Outcome again = handshake(ctx.get(), {.max_version = max_version, .resume = first.session});
    REQUIRE(again.ok);
    CHECK(again.resumed);
    SSL_SESSION_free(again.session);

    // One rotation: the ticket decrypts under the previous key, and a new ticket comes back.
    REQUIRE(keys->rotate());
    Outcome after_one =
        handshake(ctx.get(), {.max_version = max_version, .resume = first.session});
    REQUIRE(after_one.ok);
    CHECK(after_one.resumed);
    REQUIRE(after_one.session != nullptr);

    // Two rotations: the first ticket's key is gone, so a full handshake; the ticket renewed
    // after one rotation is under the now-previous key and still resumes.
    REQUIRE(keys->rotate());
    Outcome after_two =
        handshake(ctx.get(), {.max_version = max_version, .resume = first.session});
    REQUIRE(after_two.ok);
    CHECK_FALSE(after_two.resumed);
    Outcome renewed =
        handshake(ctx.get(), {.max_version = max_version, .resume = after_one.session});
    REQUIRE(renewed.ok);
    CHECK(renewed.resumed);

    for (SSL_SESSION* s : {first.session, after_one.session, after_two.session, renewed.session})
      SSL_SESSION_free(s);
  }
}

TEST_CASE("session tickets: TLS 1.2 keeps a current ticket, TLS 1.3 gets a fresh one") {
  TestPki pki;
  auto keys = std::make_shared<SessionTicketKeys>();
  auto ctx = server_ctx(pki, {}, keys);
  // TLS 1.2: no new ticket while the ticket's key is current, so the client keeps resuming the
  // same session, which stays resumable (OpenSSL's client would mark it not resumable on
  // receiving a new ticket: every other connection sharing it would do a full handshake).
  Outcome first = handshake(ctx.get(), {.max_version = TLS1_2_VERSION});
  REQUIRE(first.ok);
  for (int i = 0; i < 3; ++i) {
    Outcome again = handshake(ctx.get(), {.max_version = TLS1_2_VERSION, .resume = first.session});
    REQUIRE(again.ok);
    CHECK(again.resumed);
    CHECK(again.session == first.session);  // no new ticket came
    CHECK(SSL_SESSION_is_resumable(first.session));
    SSL_SESSION_free(again.session);
  }
  // After a rotation the ticket is renewed under the new key.
  REQUIRE(keys->rotate());
  Outcome moved = handshake(ctx.get(), {.max_version = TLS1_2_VERSION, .resume = first.session});
  REQUIRE(moved.ok);
  CHECK(moved.resumed);
  CHECK(moved.session != first.session);
  // TLS 1.3: every resumption brings a fresh ticket (a TLS 1.3 client uses each once).
  Outcome t13 = handshake(ctx.get());
  REQUIRE(t13.ok);
  Outcome t13again = handshake(ctx.get(), {.resume = t13.session});
  REQUIRE(t13again.ok);
  CHECK(t13again.resumed);
  CHECK(t13again.session != t13.session);
  for (SSL_SESSION* s : {first.session, moved.session, t13.session, t13again.session})
    SSL_SESSION_free(s);
}

TEST_CASE("session tickets: a reloaded context with the same keys resumes old tickets") {
  TestPki pki;
  auto keys = std::make_shared<SessionTicketKeys>();
  auto before = server_ctx(pki, {}, keys);
  Outcome first = handshake(before.get());
  REQUIRE(first.ok);
  before.reset();  // the old context is gone, as after a reload

  auto after = server_ctx(pki, {}, keys);
  Outcome again = handshake(after.get(), {.resume = first.session});
  REQUIRE(again.ok);
  CHECK(again.resumed);

  // Other keys (another process, or no tickets at all): a full handshake.
  auto stranger = server_ctx(pki, {}, std::make_shared<SessionTicketKeys>());
  Outcome other = handshake(stranger.get(), {.resume = first.session});
  REQUIRE(other.ok);
  CHECK_FALSE(other.resumed);
  auto no_tickets = server_ctx(pki, {}, nullptr);
  Outcome none = handshake(no_tickets.get(), {.resume = first.session});
  REQUIRE(none.ok);
  CHECK_FALSE(none.resumed);
  CHECK((none.session == nullptr || SSL_SESSION_is_resumable(none.session) == 0));
  for (SSL_SESSION* s : {first.session, again.session, other.session, none.session})
    SSL_SESSION_free(s);
}
