// Tests for src/upstream/tls_layer.cpp: a client and a server TlsLayer talking through their
// own buffers, the way the ring moves their ciphertext (in place in, queued out).
#include "upstream/tls_layer.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>
#include <string>

namespace {

using up::TlsLayer;

// A server context with a throw-away self-signed P-256 certificate, all in memory.
std::shared_ptr<SSL_CTX> server_context() {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  REQUIRE(ctx);
  EVP_PKEY* k = EVP_EC_gen("P-256");
  REQUIRE(k != nullptr);
  X509* x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, k);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  REQUIRE(X509_sign(x, k, EVP_sha256()) > 0);
  REQUIRE(SSL_CTX_use_certificate(ctx.get(), x) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey(ctx.get(), k) == 1);
  X509_free(x);
  EVP_PKEY_free(k);
  return ctx;
}

std::shared_ptr<SSL_CTX> client_context() {
  std::string err;
  auto ctx = up::make_client_tls_context(false, "", err);
  REQUIRE_MESSAGE(ctx, err);
  return ctx;
}

struct Peer {
  TlsLayer layer;
  bool established = false;
  std::string got;  // plaintext read
};

// Steps the handshake, then reads plaintext, until the layer asks for more ciphertext (which
// it does only once it has taken all it was fed).
void drain(Peer& p) {
  for (;;) {
    if (!p.established) {
      TlsLayer::Step s = p.layer.handshake();
      if (s != TlsLayer::Step::done) {
        REQUIRE(s == TlsLayer::Step::want_read);
        return;
      }
      p.established = true;
    }
    char buf[3000];
    int n = p.layer.read(buf, sizeof buf);
    if (n == -1) return;
    REQUIRE(n > 0);
    p.got.append(buf, static_cast<size_t>(n));
  }
}

// Sends all of `from`'s queued ciphertext to `to`, fed `piece` bytes at a time, each piece
// taken whole before the next (as the ring overwrites its receive buffer); true if any moved.
bool flush(Peer& from, Peer& to, size_t piece) {
  bool moved = false;
  for (std::string_view out = from.layer.out_begin(); !out.empty();
       out = from.layer.out_begin()) {
    std::string wire(out);  // the ring's receive buffer on the other end
    from.layer.out_sent(out.size());
    for (size_t at = 0; at < wire.size(); at += piece) {
      to.layer.feed(wire.data() + at, std::min(piece, wire.size() - at));
      drain(to);
    }
    moved = true;
  }
  return moved;
}

// Starts both layers on throw-away contexts and runs the handshake, fed `piece` bytes at a time.
void connect(Peer& client, Peer& server, size_t piece) {
  static const auto sctx = server_context();
  static const auto cctx = client_context();
  REQUIRE(server.layer.start_server(sctx.get()));
  REQUIRE(client.layer.start(cctx.get(), "localhost", nullptr));
  drain(client);  // the ClientHello
  for (int round = 0; round < 10 && !(client.established && server.established); ++round) {
    flush(client, server, piece);
    flush(server, client, piece);
  }
  REQUIRE(client.established);
  REQUIRE(server.established);
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i * 7 % 26);
  return s;
}

}  // namespace

TEST_CASE("tls layer: handshake and data both ways, ciphertext fed in pieces of every size") {
  for (size_t piece : {size_t{1}, size_t{7}, size_t{1000}, size_t{16384}}) {
    CAPTURE(piece);
    Peer client, server;
    connect(client, server, piece);
    std::string up = pattern(piece == 1 ? 5000 : 100000), down = pattern(70000);
    REQUIRE(client.layer.write(up.data(), up.size()));
    REQUIRE(server.layer.write(down.data(), down.size()));
    flush(client, server, piece);
    flush(server, client, piece);
    CHECK(server.got == up);
    CHECK(client.got == down);
  }
}

TEST_CASE("tls layer: the ciphertext being sent stays put while more is written") {
  Peer client, server;
  connect(client, server, 16384);
  // The server may still hold session tickets for the client: deliver them first.
  flush(server, client, 16384);

  REQUIRE(server.layer.write("hello", 5));
  std::string_view sending = server.layer.out_begin();
  REQUIRE(!sending.empty());
  const std::string before(sending);
  std::string more = pattern(50000);
  REQUIRE(server.layer.write(more.data(), more.size()));  // queued behind, never in place
  CHECK(std::string(sending) == before);
  CHECK(server.layer.out_begin().data() == sending.data());

  // A partial send: the rest of the same bytes, then what was queued behind them.
  size_t half = sending.size() / 2;
  server.layer.out_sent(half);
  std::string_view rest = server.layer.out_begin();
  CHECK(rest.data() == sending.data() + half);
  CHECK(rest.size() == sending.size() - half);
  std::string wire(sending);
  server.layer.out_sent(rest.size());
  client.layer.feed(wire.data(), wire.size());
  drain(client);
  CHECK(client.got == "hello");
  flush(server, client, 16384);
  CHECK(client.got == "hello" + more);
}

TEST_CASE("tls layer: a record cut short asks for more; EOF then reads as closed") {
  Peer client, server;
  connect(client, server, 16384);
  REQUIRE(client.layer.write("ping", 4));
  std::string wire(client.layer.out_begin());
  client.layer.out_sent(wire.size());
  server.layer.feed(wire.data(), wire.size() - 1);
  char buf[64];
  CHECK(server.layer.read(buf, sizeof buf) == -1);
  server.layer.feed_eof();
  CHECK(server.layer.read(buf, sizeof buf) == 0);
}
