#include "uringproxy/upstream_handshake.h"

#include <cstdio>

#include "uringproxy/http.h"
#include "uringproxy/socks5.h"

namespace up {

namespace {

std::string hex_byte(uint8_t b) {
  char s[8];
  std::snprintf(s, sizeof s, "0x%02x", b);
  return s;
}

}  // namespace

UpstreamHandshake::UpstreamHandshake(Protocol protocol, std::string_view username,
                                     std::string_view password, const Target* target,
                                     Request request)
    : protocol_(protocol),
      offer_userpass_(!username.empty()),
      connect_(target != nullptr),
      request_kind_(request) {
  if (protocol_ == Protocol::http) {
    // An HTTP upstream's whole handshake is the CONNECT.
    request_ = http::encode_connect(*target, offer_userpass_
                                                 ? http::basic_credentials(username, password)
                                                 : std::string());
    send(Stage::request);
    return;
  }
  uint8_t buf[600];
  greeting_.assign(reinterpret_cast<char*>(buf), socks5::encode_greeting(offer_userpass_, buf));
  if (offer_userpass_) {
    size_t n = socks5::encode_userpass(username, password, buf);
    if (n == 0) {
      fail_upstream("username or password longer than SOCKS5 allows (255 bytes)");
      return;
    }
    auth_.assign(reinterpret_cast<char*>(buf), n);
  }
  if (connect_) {
    size_t n = socks5::encode_request(request == Request::udp_associate
                                          ? socks5::Command::udp_associate
                                          : socks5::Command::connect,
                                      *target, buf);
    if (n == 0) {
      // Not the upstream's fault: this target cannot be named in SOCKS5.
      fail(Failure::Fault::target, 0x01, 502, "the target's name does not fit in SOCKS5");
      return;
    }
    request_.assign(reinterpret_cast<char*>(buf), n);
  }
  send(Stage::greeting);
}

std::string UpstreamHandshake::stage_name() const {
  switch (stage_) {
    case Stage::greeting: return "greeting";
    case Stage::auth: return "authentication";
    case Stage::request: break;
  }
  return request_kind_ == Request::udp_associate ? "UDP ASSOCIATE" : "CONNECT";
}

UpstreamHandshake::Step UpstreamHandshake::send(Stage s) {
  stage_ = s;
  in_.clear();
  return step_ = Step::send;
}

std::string_view UpstreamHandshake::output() const {
  if (step_ != Step::send) return {};
  return stage_ == Stage::greeting ? greeting_ : stage_ == Stage::auth ? auth_ : request_;
}

void UpstreamHandshake::sent() {
  if (step_ == Step::send) step_ = Step::recv;
}

UpstreamHandshake::Step UpstreamHandshake::fail(Failure::Fault fault, uint8_t socks_reply,
                                                int http_status, std::string why) {
  failure_ = {fault, socks_reply, http_status, std::move(why)};
  in_.clear();
  return step_ = Step::failed;
}

UpstreamHandshake::Step UpstreamHandshake::closed(bool reset) {
  if (step_ != Step::recv) return step_;
  std::string why = std::string(reset ? "reset" : "closed") +
                    " the connection before answering our " + stage_name();
  // After our CONNECT the upstream was working; it is the target that failed (dante answers a
  // refused target with a reset, and a TLS front end may drop the reply).
  if (stage_ == Stage::request) return fail(Failure::Fault::after_request, 0x05, 502, why);
  return fail_upstream(why);
}

UpstreamHandshake::Step UpstreamHandshake::received(std::span<const char> in) {
  if (step_ != Step::recv || in.empty()) return step_;
  in_.append(in.data(), in.size());
  switch (stage_) {
    case Stage::greeting: return on_greeting_reply();
    case Stage::auth: return on_auth_reply();
    case Stage::request: break;
  }
  return protocol_ == Protocol::socks5 ? on_socks_reply() : on_http_reply();
}

// VER METHOD. Nothing may follow: we have not sent our next message yet.
UpstreamHandshake::Step UpstreamHandshake::on_greeting_reply() {
  auto b = reinterpret_cast<const uint8_t*>(in_.data());
  if (b[0] != 5) return fail_upstream("not a SOCKS5 server (its reply to our greeting has version " +
                                      std::to_string(b[0]) + ")");
  if (in_.size() < 2) return step_;
  if (in_.size() > 2) return fail_upstream("sent more than a SOCKS5 method choice");
  uint8_t method = b[1];
  if (method == socks5::method_userpass && offer_userpass_) return send(Stage::auth);
  if (method == socks5::method_no_auth) {
    if (!connect_) return step_ = Step::done;
    return send(Stage::request);
  }
  if (method == socks5::method_none_acceptable)
    return fail_upstream("refused every authentication method we offered");
  return fail_upstream("chose authentication method " + hex_byte(method) +
                       ", which we did not offer");
}

// RFC 1929: VER(1) STATUS. Nothing may follow.
UpstreamHandshake::Step UpstreamHandshake::on_auth_reply() {
  auto b = reinterpret_cast<const uint8_t*>(in_.data());
  if (b[0] != 1)
    return fail_upstream("sent a malformed RFC 1929 reply (version " + std::to_string(b[0]) +
                         ", not 1)");
  if (in_.size() < 2) return step_;
  if (in_.size() > 2) return fail_upstream("sent more than an RFC 1929 reply");
  if (b[1] != 0) return fail_upstream("refused our username/password");
  if (!connect_) return step_ = Step::done;
  return send(Stage::request);
}

// VER REP RSV ATYP BND.ADDR BND.PORT; what follows is the tunnel's.
UpstreamHandshake::Step UpstreamHandshake::on_socks_reply() {
  socks5::Reply rep;
  size_t used = 0;
  auto b = reinterpret_cast<const uint8_t*>(in_.data());
  switch (socks5::parse_reply({b, in_.size()}, rep, used, bound_)) {
    case socks5::Parse::need_more: return step_;
    case socks5::Parse::error: return fail_upstream("sent a malformed SOCKS5 reply");
    case socks5::Parse::done: break;
  }
  if (rep != socks5::Reply::succeeded) {
    // The upstream refused the target: passed on as it came; it says nothing about the
    // upstream's health.
    std::string why = "answered our " + stage_name() + " with SOCKS5 reply " +
                      hex_byte(static_cast<uint8_t>(rep));
    switch (rep) {
      case socks5::Reply::not_allowed: return fail(Failure::Fault::target, 0x02, 403, why);
      case socks5::Reply::net_unreachable: return fail(Failure::Fault::target, 0x03, 502, why);
      case socks5::Reply::host_unreachable: return fail(Failure::Fault::target, 0x04, 502, why);
      case socks5::Reply::refused: return fail(Failure::Fault::target, 0x05, 502, why);
      case socks5::Reply::timeout: return fail(Failure::Fault::target, 0x06, 504, why);
      default: return fail(Failure::Fault::target, 0x01, 502, why);
    }
  }
  in_.erase(0, used);
  return step_ = Step::done;
}

// A response head; what follows a 2xx is the tunnel's.
UpstreamHandshake::Step UpstreamHandshake::on_http_reply() {
  // Only a head that ends within max_reply counts, whatever arrived behind it.
  http::ResponseHead head;
  std::span<const char> view(in_.data(), std::min(in_.size(), max_reply));
  switch (http::parse_response_head(view, head)) {
    case http::Parse::need_more:
      if (in_.size() >= max_reply)
        return fail_upstream("sent a response head longer than " + std::to_string(max_reply) +
                             " bytes");
      return step_;
    case http::Parse::error:
      return fail_upstream("sent a malformed HTTP response");
    case http::Parse::done:
      break;
  }
  int status = head.status;
  if (status == 407) return fail_upstream("refused our credentials (407)");
  if (status < 200 || status > 299) {
    std::string why = "answered our CONNECT with " + std::to_string(status);
    if (status == 403) return fail(Failure::Fault::target, 0x02, 502, why);
    if (status == 504) return fail(Failure::Fault::target, 0x06, 504, why);
    if (status >= 500) return fail(Failure::Fault::target, 0x05, 502, why);
    return fail(Failure::Fault::target, 0x01, 502, why);
  }
  in_.erase(0, head.head_len);
  return step_ = Step::done;
}

}  // namespace up
