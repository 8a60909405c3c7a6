#pragma once
// SOCKS5 (RFC 1928) with username/password (RFC 1929): greeting -> userpass -> request.
#include "frontend/frontend.h"

namespace up {

class Socks5Frontend final : public Frontend {
 public:
  explicit Socks5Frontend(Connection& c) : c_(c) {}
  void begin() override;
  void on_client_data(uint32_t new_bytes) override;
  void on_authenticated() override;
  void answer_auth_failed() override;
  void answer_dialed() override;
  void answer_failure(const Failure& f) override;

 private:
  enum class Step : uint8_t { greeting, userpass, request, done };
  void greeting();
  void userpass();
  void request();

  Connection& c_;
  Step step_ = Step::greeting;
};

}  // namespace up
