// Credential checks for both protocols: cache hit on the worker, else crypt(3) off-thread.
#include <string.h>

#include "auth/auth_guard.h"
#include "auth/credential_cache.h"
#include "auth/password_verifier.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/worker.h"
#include "frontend/frontend.h"
#include "route/route_selector.h"
#include "uringproxy/socks5.h"

namespace up {

void Connection::authenticate(std::string_view user, std::string_view password) {
  // Only a syntactically valid name is logged: a client may type its password into the
  // username field, and the log must not carry it.
  bool plausible = !user.empty() && user.size() <= 64 &&
                   user.find_first_of(" \t\r\n:") == std::string_view::npos;
  UserName name = split_username(user);  // "alice.us-east" -> "alice", group "us-east"
  user_ = plausible ? std::string(name.base) : std::string();
  group_ = plausible ? std::string(name.group) : std::string();
  const Snapshot& snap = w_.snapshot();
  if (!snap.config.auth_required) return on_authenticated();
  if (w_.runtime().auth_guard->blocked(client_key(), w_.now_ms())) {
    // Too many failures from this address: refused whatever it sends, no hash is run.
    w_.runtime().auth_blocked.fetch_add(1, std::memory_order_relaxed);
    return frontend_->answer_auth_failed();
  }
  std::string_view base = name.base;
  const User* u = snap.find_user(base);
  // A view: the hash is copied (for the verifier thread) only on a cache miss.
  std::string_view hash = (u && u->enabled) ? std::string_view(u->password_hash) : "";
  CredentialDigest digest{};
  if (!hash.empty()) {
    digest = CredentialCache::digest(base, password, hash);
    if (w_.credentials().contains(base, digest)) return on_authenticated();
  }
  State resume = state_;
  state_ = State::verifying;
  verifying_from_ = resume;
  ++async_;
  Worker* w = &w_;
  Connection* self = this;
  // The hash travels with the answer: the user may be deleted, disabled or given a new
  // password while crypt(3) runs, and the answer counts only if it still holds then.
  w_.runtime().verifier->submit(
      std::string(password), std::string(hash),
      [w, self, digest, checked = std::string(hash)](bool ok) mutable {
        w->mailbox().post([w, self, digest, checked = std::move(checked), ok] {
          self->on_verified(ok, digest.data(), checked);
          if (self->can_free()) w->release(self);
        });
      });
}

void Connection::on_verified(bool ok, const uint8_t* digest, std::string_view hash) {
  --async_;
  if (state_ == State::closed) return;
  state_ = verifying_from_;
  if (!ok) return on_auth_failed();
  // A snapshot published meanwhile may have revoked the login (Worker::kick leaves verifying
  // connections to this check): refused with the protocol's answer, not counted as a guess.
  const User* u = w_.snapshot().find_user(user_);
  if (!u || !u->enabled || u->password_hash != hash) return frontend_->answer_auth_failed();
  CredentialDigest d;
  std::copy(digest, digest + d.size(), d.begin());
  w_.credentials().insert(user_, d);
  on_authenticated();
}

void Connection::on_authenticated() {
  if (!tally_ && !user_.empty()) {
    tally_ = &w_.stats().users[user_];
    ++tally_->connections_total;
    ++tally_->connections_active;
  }
  frontend_->on_authenticated();
}

AuthGuard::Address Connection::client_key() const {
  AuthGuard::Address a{};
  if (client_addr_.sin6_family == AF_INET) {
    a[10] = a[11] = 0xff;  // v4-mapped
    memcpy(a.data() + 12, &reinterpret_cast<const sockaddr_in*>(&client_addr_)->sin_addr, 4);
  } else {
    memcpy(a.data(), &client_addr_.sin6_addr, 16);
  }
  return a;
}

void Connection::on_auth_failed() {
  const LimitsConfig& l = w_.snapshot().config.limits;
  AuthPolicy policy{l.auth_fail_block_after, uint64_t{l.auth_fail_window_s} * 1000,
                    uint64_t{l.auth_block_s} * 1000, l.auth_fail_delay_ms};
  FailureVerdict v = w_.runtime().auth_guard->record_failure(client_key(), w_.now_ms(), policy);
  if (v.blocked_now)
    UP_WARN("client %s blocked for %u s after %u failed logins within %u s",
            format_client(client_addr_).c_str(), l.auth_block_s, l.auth_fail_block_after,
            l.auth_fail_window_s);
  if (v.delay_ms > 0) {
    // Slowed down: the answer waits on the timer (on_timeout), holding nothing but this
    // connection; the client learns nothing sooner by closing.
    result_ = Result::auth_failed;
    state_ = State::failing;
    auth_delayed_ = true;
    set_deadline_in(static_cast<uint32_t>(v.delay_ms));
    return;
  }
  frontend_->answer_auth_failed();
}

}  // namespace up
