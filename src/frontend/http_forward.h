#pragma once
// Plain-HTTP forwarding with keep-alive: absolute-URI requests are rewritten to origin form and
// sent to the origin; request and response bodies pass through unchanged, framed by
// Content-Length or chunked coding (BodyTracker), so several requests can share one client
// connection and, while the origin stays the same, one origin connection. Bytes go through
// user space here: the framing has to be read.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "uringproxy/http.h"
#include "uringproxy/target.h"

namespace up {

class Connection;

struct HttpForward {
  explicit HttpForward(Connection& c) : c(c) {}

  void on_client_data();  // parse the next request head from the handshake buffer
  void on_authenticated();
  void on_dialed();
  void on_client_recv(int res);
  void on_target_recv(int res);
  void on_sent(bool to_client);
  void retry();  // the user's bandwidth cap has room again
  // A redial waits for the old origin's cancelled operations; the connection reports each
  // target completion here meanwhile.
  bool draining() const { return draining_; }
  void target_drained();

 private:
  enum class Phase : uint8_t {
    head,       // waiting for / parsing a request head
    auth,       // credentials being verified
    dialing,    // connecting to the origin
    send_head,  // rewritten head going to the origin
    req_body,   // request body passing through
    resp_head,  // reading the origin's response head
    resp_sent,  // response head going to the client
    resp_body,  // response body passing through
  };
  void redial();  // close the origin connection, route and dial afresh
  void send_request_head();
  void pump_request_body();
  void parse_response_head();
  void pump_response_body();
  void response_done();
  void reject(int status);
  // How many body bytes may go on now under the user's bandwidth cap (`have` if uncapped);
  // 0 parks the body until the worker's next tick (retry()).
  size_t body_allowance(bool up, size_t have);

  Connection& c;
  Phase phase_ = Phase::head;
  // The heads parsed last, kept so that their header lists keep their capacity from one
  // request to the next, as out_ does.
  http::RequestHead req_head_;
  http::ResponseHead resp_head_;
  std::string origin_form_;
  std::string out_;  // rewritten head (to origin) or response head (to client)
  std::optional<Target> origin_;  // of the open origin connection
  uint64_t generation_ = 0;   // snapshot it was routed and ACL-checked by
  std::string owner_;         // the username (with any group) of the request in flight
  bool served_ = false;       // a request has been handled on this connection
  // The last request's Proxy-Authorization value, and whether it was accepted under snapshot
  // accepted_generation_: a keep-alive client repeats it on every request.
  std::string cred_;
  bool accepted_ = false;
  uint64_t accepted_generation_ = 0;
  bool draining_ = false;     // a redial waits for the old origin's operations
  std::string method_;        // of the request in flight (HEAD has no response body)
  Target next_;               // origin of the request in flight
  http::BodyTracker req_body_;
  http::BodyTracker resp_body_;
  bool close_after_ = false;  // client asked to close, or the body runs until close
  bool reused_ = false;       // request went over a kept-alive origin connection
  bool request_has_body_ = false;
  bool expect_continue_ = false;
  bool interim_ = false;           // a 1xx response is on its way to the client
  bool resp_until_close_ = false;  // response body ends when the origin closes
  bool origin_keep_ = true;        // the origin connection may serve the next request
  bool throttled_ = false;         // a body waits for the bandwidth cap
  uint32_t in_flight_ = 0;    // bytes of a body chunk being sent
  std::unique_ptr<char[]> obuf_;  // origin input
  uint32_t olen_ = 0;
  static constexpr uint32_t obuf_cap = 64 * 1024;
};

}  // namespace up
