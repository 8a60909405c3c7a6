// HTTP proxy handshake: the first request head decides CONNECT (tunnel) or forwarding.
#include "frontend/http_frontend.h"

#include <string.h>

#include "core/connection.h"
#include "core/worker.h"
#include "frontend/http_forward.h"
#include "uringproxy/http.h"

namespace up {

void HttpFrontend::begin() {
  c_.ensure_handshake_buffer(http::max_head_bytes + 1);
  c_.submit_recv_client();
}

void HttpFrontend::on_client_data(uint32_t new_bytes) {
  // A head cannot end without a LF: a client dribbling bytes is not re-parsed for each one
  // (that would be quadratic in the head size).
  std::string_view hs = c_.handshake();
  if (new_bytes > 0 && !c_.handshake_full() &&
      !memchr(hs.data() + hs.size() - new_bytes, '\n', new_bytes))
    return c_.submit_recv_client();
  http::RequestHead head;
  int status = 400;
  switch (http::parse_request_head(hs, head, status)) {
    case http::Parse::need_more:
      if (c_.handshake_full()) return c_.fail({Result::bad_request, 0x01, 431});
      return c_.submit_recv_client();
    case http::Parse::error:
      return c_.fail({Result::bad_request, 0x01, status});
    case http::Parse::done:
      break;
  }
  if (head.method != "CONNECT") {
    // Absolute-URI forwarding: the keep-alive loop re-reads this head from the buffer.
    return c_.start_forwarding().on_client_data();
  }
  Target target;
  if (!parse_authority(head.target, 0, target)) return c_.fail({Result::bad_request, 0x01, 400});
  c_.set_target(target);
  std::string user, pass;
  std::string_view cred = http::find_header(head.headers, "Proxy-Authorization");
  bool have = !cred.empty() && http::parse_basic_credentials(cred, user, pass);
  c_.consume_handshake(static_cast<uint32_t>(head.head_len));
  if (!have && c_.worker().snapshot().config.auth_required)
    return c_.fail({Result::auth_failed, 0x01, 407});
  c_.authenticate(user, pass);
}

void HttpFrontend::on_authenticated() {
  if (HttpForward* f = c_.forwarding()) return f->on_authenticated();
  c_.route_and_dial();
}

void HttpFrontend::answer_auth_failed() { c_.fail({Result::auth_failed, 0x01, 407}); }

void HttpFrontend::answer_dialed() {
  if (HttpForward* f = c_.forwarding()) return f->on_dialed();
  std::string_view ok = http::status_response(200);
  c_.submit_send_client(ok.data(), static_cast<uint32_t>(ok.size()));
}

void HttpFrontend::answer_failure(const Failure& f) {
  std::string_view r = f.result == Result::over_quota ? http::quota_exceeded_response()
                                                      : http::status_response(f.http_status);
  if (c_.client_send_pending()) return c_.finish(f.result);
  c_.submit_send_client(r.data(), static_cast<uint32_t>(r.size()));
}

}  // namespace up
