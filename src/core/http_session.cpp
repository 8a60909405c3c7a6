// HTTP proxy handshake: the first request head decides CONNECT (tunnel) or forwarding.
#include "core/connection.h"
#include "core/worker.h"
#include "relay/http_forward.h"
#include "uringproxy/http.h"

namespace up {

void Connection::http_head() {
  http::RequestHead head;
  int status = 400;
  switch (http::parse_request_head({hs_.get(), hs_len_}, head, status)) {
    case http::Parse::need_more:
      if (hs_len_ >= hs_cap_) return fail({Result::bad_request, 0x01, 431});
      return submit_recv_client();
    case http::Parse::error:
      return fail({Result::bad_request, 0x01, status});
    case http::Parse::done:
      break;
  }
  if (head.method != "CONNECT") {
    // Absolute-URI forwarding: the keep-alive loop re-reads this head from hs_.
    state_ = State::forwarding;
    fwd_ = std::make_unique<HttpForward>(*this);
    return fwd_->on_client_data();
  }
  if (!parse_authority(head.target, 0, target_)) return fail({Result::bad_request, 0x01, 400});
  std::string user, pass;
  std::string_view cred = http::find_header(head.headers, "Proxy-Authorization");
  bool have = !cred.empty() && http::parse_basic_credentials(cred, user, pass);
  consume_handshake(static_cast<uint32_t>(head.head_len));
  if (!have && w_.snapshot().config.auth_required)
    return fail({Result::auth_failed, 0x01, 407});
  authenticate(user, pass);
}

}  // namespace up
