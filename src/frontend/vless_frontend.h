#pragma once
// VLESS (version 0) over a TLS listener: one request header names the user (by uuid), the
// command and the target. VLESS has no error replies: every refusal is a close.
#include "frontend/frontend.h"

namespace up {

class VlessFrontend final : public Frontend {
 public:
  explicit VlessFrontend(Connection& c) : c_(c) {}
  void begin() override;
  void on_client_data(uint32_t new_bytes) override;
  void on_authenticated() override;
  void answer_auth_failed() override;
  void answer_dialed() override;
  void answer_failure(const Failure& f) override;

 private:
  Connection& c_;
  bool parsed_ = false;  // bytes behind the header wait for the relay
};

}  // namespace up
