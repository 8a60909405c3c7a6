#pragma once
// crypt(3) verification on helper threads: yescrypt and bcrypt cost milliseconds by design, so
// they never run on a worker. Results come back through the caller's completion callback, run
// on the helper thread (the worker's mailbox hands them back to its ring).
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace up {

class PasswordVerifier {
 public:
  using Done = std::function<void(bool ok)>;

  explicit PasswordVerifier(unsigned threads);
  ~PasswordVerifier();

  // An empty stored_hash (unknown user) is checked against a dummy hash of the same cost, so
  // the answer takes the same time whether the user exists or not.
  void submit(std::string password, std::string stored_hash, Done done);

  // Unknown users are checked against a dummy hash made with this hash's scheme and cost (a
  // real user's), so a failure costs the same whether the user exists or not.
  void match_cost_of(const std::string& real_hash);

  // Synchronous check, for tools and tests.
  static bool check(const std::string& password, const std::string& stored_hash);

 private:
  struct Job {
    std::string password;
    std::string stored_hash;
    Done done;
    bool real = false;  // false: the dummy hash of an unknown user, never a success
  };
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  std::string dummy_hash_;
};

}  // namespace up
