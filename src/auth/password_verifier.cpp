#include "auth/password_verifier.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <string.h>

#include <memory>

namespace up {

PasswordVerifier::PasswordVerifier(unsigned threads) {
  // A yescrypt hash of a random string: the default cost, like `uringproxyctl user add`.
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$y$", 0, nullptr, 0, salt, sizeof salt)) {
    auto data = std::make_unique<crypt_data>();
    if (const char* h = crypt_rn("uringproxy-dummy", salt, data.get(), sizeof *data))
      dummy_hash_ = h;
  }
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

PasswordVerifier::~PasswordVerifier() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void PasswordVerifier::match_cost_of(const std::string& real_hash) {
  if (real_hash.empty() || real_hash[0] != '$') return;
  auto data = std::make_unique<crypt_data>();
  // crypt(3) takes scheme, cost and salt from the setting prefix of a full hash.
  const char* h = crypt_rn("uringproxy-dummy", real_hash.c_str(), data.get(), sizeof *data);
  if (!h || h[0] != '$') return;
  std::lock_guard lock(mu_);
  dummy_hash_ = h;
}

void PasswordVerifier::submit(std::string password, std::string stored_hash, Done done) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back({std::move(password), std::move(stored_hash), std::move(done)});
  }
  cv_.notify_one();
}

bool PasswordVerifier::check(const std::string& password, const std::string& stored_hash) {
  if (stored_hash.empty() || stored_hash[0] != '$') return false;
  // crypt(3) would read only up to a NUL: "secret\0junk" must not pass for "secret".
  if (password.find('\0') != std::string::npos) return false;
  auto data = std::make_unique<crypt_data>();
  const char* h = crypt_rn(password.c_str(), stored_hash.c_str(), data.get(), sizeof *data);
  if (!h || h[0] == '*') return false;
  size_t n = strlen(h);
  return n == stored_hash.size() && CRYPTO_memcmp(h, stored_hash.data(), n) == 0;
}

void PasswordVerifier::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping
      job = std::move(jobs_.front());
      jobs_.pop_front();
      if (job.stored_hash.empty()) job.stored_hash = dummy_hash_;  // unknown user
      else job.real = true;
    }
    bool ok = check(job.password, job.stored_hash) && job.real;
    OPENSSL_cleanse(job.password.data(), job.password.size());
    job.done(ok);
  }
}

}  // namespace up
