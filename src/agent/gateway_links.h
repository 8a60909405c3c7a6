#pragma once
// Agent mode: what the supervisor (agent/agent_main.cpp, the main thread) and the links on the
// workers (agent/reverse_link.cpp) share. The supervisor resolves the gateway, decides when to
// (re)connect and keeps the pool at idle_connections; a link reports how it is doing through
// the counters below and wakes the supervisor. A reverse link that is handed a tunnel opens
// its own replacement at once (no round trip through the supervisor), so a burst of tunnels
// is not paced by the supervisor's loop.
#include <openssl/types.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "uringproxy/config.h"

namespace up {

struct Runtime;

// Who the agent is and how it speaks TLS to its gateway. A reload (agent_main.cpp) installs a
// new one whole; each link takes the one in force when it opens and keeps it.
struct LinkIdentity {
  std::string id;
  std::string secret;  // never logged
  std::string software;
  std::string server_name;               // SNI and the certificate's name
  std::shared_ptr<SSL_CTX> tls;          // the control link's: TLS 1.2+, 1.3 in practice
  std::shared_ptr<SSL_CTX> reverse_tls;  // the reverse links' (agent_main.cpp: why TLS 1.2)
  // Kept beside the workers' TLS sessions: a session made under an older identity (another
  // gateway, CA or name) is never offered again.
  uint64_t epoch = 0;
};

struct GatewayLinks {
  GatewayLinks();
  ~GatewayLinks();
  GatewayLinks(const GatewayLinks&) = delete;
  GatewayLinks& operator=(const GatewayLinks&) = delete;

  // Fixed before the first link opens.
  Runtime* rt = nullptr;
  uint32_t handshake_timeout_ms = 10000;  // TCP + TLS + HELLO/AUTH_RESULT, per link

  std::shared_ptr<const LinkIdentity> identity();  // from any thread
  void set_identity(std::shared_ptr<const LinkIdentity> next);

  enum Control : int { down = 0, connecting = 1, up = 2 };
  std::atomic<int> control{down};
  // The link generation: bumped when the control link is lost, so that reverse links of the
  // lost session neither count nor replace themselves any more.
  std::atomic<uint64_t> generation{1};
  std::atomic<int> reverse_opening{0};  // dialled, not yet authenticated
  std::atomic<int> reverse_idle{0};     // authenticated, waiting for a TUNNEL
  std::atomic<uint32_t> reverse_failures{0};  // closed before authenticating (for backoff)
  std::atomic<uint64_t> tunnels{0};
  std::atomic<uint64_t> reverse_handshakes{0};  // reverse links authenticated...
  std::atomic<uint64_t> reverse_resumed{0};     // ...of which resumed a TLS session

  // The gateway's address, as last resolved by the supervisor.
  void set_gateway(const sockaddr_storage& a, socklen_t len);
  void gateway(sockaddr_storage& a, socklen_t& len);

  // Opens a link on the next worker (round robin), from any thread.
  void open(bool control_link);
  // Wakes the supervisor (a link's state changed).
  void notify();
  int wake_fd() const { return wake_fd_; }

  // The user name links are listed under while idle, so the supervisor can close them all
  // (Worker::kick) without touching tunnels; the control link has its own.
  static constexpr const char* idle_user = "(agent: idle reverse link)";
  static constexpr const char* control_user = "(agent: control link)";

 private:
  std::mutex mu_;
  std::shared_ptr<const LinkIdentity> identity_;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  std::atomic<unsigned> next_worker_{0};
  int wake_fd_ = -1;
};

}  // namespace up
