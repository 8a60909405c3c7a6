#pragma once
// HTTP proxy: the first request head decides CONNECT (a tunnel) or forwarding (absolute-URI
// requests with keep-alive, frontend/http_forward.cpp).
#include "frontend/frontend.h"

namespace up {

class HttpFrontend final : public Frontend {
 public:
  explicit HttpFrontend(Connection& c) : c_(c) {}
  void begin() override;
  void on_client_data(uint32_t new_bytes) override;
  void on_authenticated() override;
  void answer_auth_failed() override;
  void answer_dialed() override;
  void answer_failure(const Failure& f) override;

 private:
  Connection& c_;
};

}  // namespace up
