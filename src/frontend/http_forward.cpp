#include "frontend/http_forward.h"

#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>

#include "core/connection.h"
#include "core/tls_io.h"
#include "core/worker.h"

namespace up {

namespace {
bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}
constexpr std::string_view continue_100 = "HTTP/1.1 100 Continue\r\n\r\n";
}  // namespace

void HttpForward::reject(int status) {
  Result r = status == 407 ? Result::auth_failed
           : status == 502 ? Result::upstream_error
                           : Result::bad_request;
  c.fail({r, 0x01, status});
}

void HttpForward::on_client_data() {
  http::RequestHead& head = req_head_;
  int status = 400;
  switch (http::parse_request_head(c.handshake(), head, status)) {
    case http::Parse::need_more:
      if (c.handshake_full()) return reject(431);
      return c.submit_recv_client();
    case http::Parse::error:
      return reject(status);
    case http::Parse::done:
      break;
  }
  // A tunnel has to be a connection's first request; forwarding cannot turn into one.
  if (head.method == "CONNECT") return reject(400);
  if (!http::parse_absolute_uri(head.target, next_, origin_form_)) return reject(400);
  http::BodyFraming framing;
  if (!http::request_body_framing(head, framing)) return reject(400);
  req_body_ = http::BodyTracker(framing);
  request_has_body_ = framing.kind != http::BodyKind::none;
  close_after_ = http::wants_close(head.version_minor, head.headers);
  // "Expect: 100-continue" is answered here, so the client does not wait on an origin that
  // will only see the body after its head has gone through us.
  expect_continue_ = false;
  for (auto it = head.headers.begin(); it != head.headers.end();) {
    if (iequals(it->name, "Expect")) {
      expect_continue_ = iequals(it->value, "100-continue");
      it = head.headers.erase(it);
    } else {
      ++it;
    }
  }
  method_ = head.method;
  http::rewrite_forward_head(head, origin_form_, next_, out_);
  std::string_view cred = http::find_header(head.headers, "Proxy-Authorization");
  if (served_ && accepted_ && !cred.empty() && cred == cred_ &&
      c.worker().snapshot().generation == accepted_generation_) {
    // The very credentials this connection's previous request passed, under the same snapshot
    // (so the user is still enabled with the same password): same user, no second check.
    c.consume_handshake(static_cast<uint32_t>(head.head_len));
    phase_ = Phase::auth;
    return c.on_authenticated();
  }
  accepted_ = false;
  cred_.assign(cred);
  std::string user, pass;
  bool have = !cred.empty() && http::parse_basic_credentials(cred, user, pass);
  c.consume_handshake(static_cast<uint32_t>(head.head_len));
  if (!have && c.worker().snapshot().config.auth_required) return reject(407);
  // Each request is the sender's own: another user on the same client connection (in turn
  // or pipelined) never inherits the previous user's origin connection, route or counters.
  if (user != owner_) {
    if (served_) c.change_user();
    origin_.reset();
    owner_ = std::move(user);
  }
  served_ = true;
  phase_ = Phase::auth;
  c.authenticate(owner_, pass);  // -> on_authenticated(), or a 407 from the connection
}

void HttpForward::on_authenticated() {
  accepted_ = true;
  accepted_generation_ = c.worker().snapshot().generation;
  c.set_state(State::forwarding);
  c.set_target(next_);
  // The open origin connection was routed and ACL-checked for this user, this origin and
  // this snapshot; if any of them changed it is not reused (fail closed).
  if (c.fd(Side::target) >= 0 && origin_ && *origin_ == next_ &&
      c.worker().snapshot().generation == generation_) {
    reused_ = true;
    return send_request_head();
  }
  redial();
}

void HttpForward::redial() {
  c.close_target();
  c.release_route();
  origin_.reset();
  reused_ = false;
  phase_ = Phase::dialing;
  // The previous origin's TLS session and upstream handshake state must not carry over to
  // the next socket, and their buffers live until the cancelled operations complete.
  if (c.target_ops_in_flight()) {
    draining_ = true;  // -> target_drained()
    return;
  }
  target_drained();
}

void HttpForward::target_drained() {
  draining_ = false;
  c.set_target_tls(nullptr);
  c.route_and_dial();  // a fresh dialer
}

void HttpForward::on_dialed() {
  c.set_state(State::forwarding);
  origin_ = next_;
  generation_ = c.worker().snapshot().generation;
  c.set_deadline_in(c.worker().snapshot().config.limits.idle_timeout_ms);
  send_request_head();
}

void HttpForward::send_request_head() {
  phase_ = Phase::send_head;
  if (expect_continue_ && request_has_body_) {
    expect_continue_ = false;  // head goes to the origin once the 100 has been sent
    return c.submit_send_client(continue_100.data(), static_cast<uint32_t>(continue_100.size()));
  }
  c.submit_send_target(out_.data(), static_cast<uint32_t>(out_.size()));
}

void HttpForward::on_sent(bool to_client) {
  switch (phase_) {
    case Phase::send_head:
      if (to_client) return c.submit_send_target(out_.data(), static_cast<uint32_t>(out_.size()));
      c.count_up(out_.size());
      phase_ = Phase::req_body;
      return pump_request_body();
    case Phase::req_body:
      c.count_up(in_flight_);
      c.bandwidth_consume(true, in_flight_);
      c.consume_handshake(in_flight_);
      in_flight_ = 0;
      return pump_request_body();
    case Phase::resp_sent:
      c.count_down(out_.size());
      if (interim_) {
        interim_ = false;
        phase_ = Phase::resp_head;
        if (olen_ > 0) return parse_response_head();
        return c.submit_recv_target(obuf_.get(), obuf_cap);
      }
      phase_ = Phase::resp_body;
      return pump_response_body();
    case Phase::resp_body:
      c.count_down(in_flight_);
      c.bandwidth_consume(false, in_flight_);
      memmove(obuf_.get(), obuf_.get() + in_flight_, olen_ - in_flight_);
      olen_ -= in_flight_;
      in_flight_ = 0;
      return pump_response_body();
    default:
      return;
  }
}

void HttpForward::pump_request_body() {
  for (;;) {
    if (req_body_.done()) {
      phase_ = Phase::resp_head;
      if (!obuf_) obuf_ = std::make_unique_for_overwrite<char[]>(obuf_cap);
      olen_ = 0;
      return c.submit_recv_target(obuf_.get(), obuf_cap);
    }
    std::string_view in = c.handshake();
    if (in.empty()) return c.submit_recv_client();
    size_t avail = body_allowance(true, in.size());
    if (avail == 0) return;
    size_t used = 0;
    if (req_body_.feed(in.substr(0, avail), used) == http::Parse::error)
      return reject(400);
    if (used == 0) continue;  // body complete at this boundary
    in_flight_ = static_cast<uint32_t>(used);
    return c.submit_send_target(in.data(), in_flight_);
  }
}

void HttpForward::on_client_recv(int res) {
  if (res <= 0) {
    // Closing between requests is how keep-alive ends: not an error.
    bool idle = phase_ == Phase::head && c.handshake().empty();
    return c.finish(res == 0 ? (idle ? Result::ok : Result::client_closed) : Result::reset);
  }
  // The connection has counted the bytes into its handshake buffer.
  if (phase_ == Phase::head) {
    std::string_view in = c.handshake();
    if (!c.handshake_full() && !memchr(in.data() + in.size() - res, '\n', res))
      return c.submit_recv_client();  // no line end yet: nothing new to parse
    return on_client_data();
  }
  if (phase_ == Phase::req_body) return pump_request_body();
}

void HttpForward::on_target_recv(int res) {
  if (res < 0) {
    if (phase_ == Phase::resp_head) return reject(502);
    return c.finish(Result::reset);
  }
  if (res == 0) {
    if (phase_ == Phase::resp_head) {
      if (olen_ == 0 && reused_ && !request_has_body_) {
        // The origin closed its idle keep-alive connection as we reused it: one fresh try.
        return redial();
      }
      return reject(502);
    }
    if (phase_ == Phase::resp_body && resp_until_close_) {
      origin_keep_ = false;
      close_after_ = true;
      return response_done();
    }
    return c.finish(Result::upstream_error);  // origin ended mid-body
  }
  olen_ += static_cast<uint32_t>(res);
  if (phase_ == Phase::resp_head) return parse_response_head();
  if (phase_ == Phase::resp_body) return pump_response_body();
}

void HttpForward::parse_response_head() {
  http::ResponseHead& rh = resp_head_;
  switch (http::parse_response_head({obuf_.get(), olen_}, rh)) {
    case http::Parse::need_more:
      if (olen_ == obuf_cap) return reject(502);
      return c.submit_recv_target(obuf_.get() + olen_, obuf_cap - olen_);
    case http::Parse::error:
      return reject(502);
    case http::Parse::done:
      break;
  }
  if (rh.status == 101) return reject(502);  // Upgrade is hop-by-hop: we never asked for it
  interim_ = rh.status >= 100 && rh.status < 200;
  if (!interim_) {
    http::BodyFraming framing = http::response_body_framing(rh, method_);
    resp_until_close_ = framing.kind == http::BodyKind::until_close;
    origin_keep_ = !resp_until_close_ && !http::wants_close(rh.version_minor, rh.headers);
    if (resp_until_close_) close_after_ = true;
    resp_body_ = http::BodyTracker(framing);
  }
  http::rewrite_response_head(rh, close_after_ && !interim_, out_);
  uint32_t taken = static_cast<uint32_t>(rh.head_len);
  if (!interim_ && taken < olen_ && !c.bandwidth_capped()) {
    // Body bytes that came with the head go out in the same send: a small response costs the
    // client one segment and the worker one send, not two of each.
    size_t used = 0;
    if (resp_body_.feed({obuf_.get() + taken, olen_ - taken}, used) == http::Parse::error)
      return c.finish(Result::upstream_error);
    out_.append(obuf_.get() + taken, used);
    taken += static_cast<uint32_t>(used);
  }
  memmove(obuf_.get(), obuf_.get() + taken, olen_ - taken);
  olen_ -= taken;
  phase_ = Phase::resp_sent;
  c.submit_send_client(out_.data(), static_cast<uint32_t>(out_.size()));
}

void HttpForward::pump_response_body() {
  for (;;) {
    if (resp_body_.done()) return response_done();
    if (olen_ == 0) return c.submit_recv_target(obuf_.get(), obuf_cap);
    size_t avail = body_allowance(false, olen_);
    if (avail == 0) return;
    size_t used = 0;
    if (resp_body_.feed({obuf_.get(), avail}, used) == http::Parse::error)
      return c.finish(Result::upstream_error);
    if (used == 0) continue;
    in_flight_ = static_cast<uint32_t>(used);
    return c.submit_send_client(obuf_.get(), in_flight_);
  }
}

size_t HttpForward::body_allowance(bool up, size_t have) {
  size_t allowed = c.bandwidth_allowance(up, have);
  if (allowed == 0) {
    throttled_ = true;
    c.wait_for_retry();
    return 0;
  }
  return std::min(have, allowed);
}

void HttpForward::retry() {
  if (!throttled_) return;
  throttled_ = false;
  if (phase_ == Phase::req_body) return pump_request_body();
  if (phase_ == Phase::resp_body) return pump_response_body();
}

void HttpForward::response_done() {
  if (olen_ > 0 || !origin_keep_) {
    // Bytes past the response, or an origin that said close: that connection is done.
    c.close_target();
    origin_.reset();
    olen_ = 0;
  }
  if (close_after_) return c.finish(Result::ok);
  phase_ = Phase::head;
  c.set_deadline_in(c.worker().snapshot().config.limits.idle_timeout_ms);
  if (!c.handshake().empty()) return on_client_data();
  c.submit_recv_client();
}

}  // namespace up
