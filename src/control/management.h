#pragma once
// The management thread: after start-up it owns the control socket, the metrics endpoint,
// signals, reloads and live edits. It publishes snapshots and asks workers (through their
// mailboxes) for counters and tunnel lists; it never blocks a worker, and workers never wait
// for it.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "core/worker_stats.h"
#include "uringproxy/config.h"

namespace up {

class AccessLog;
class HealthBoard;
class HealthChecker;
class SnapshotStore;
struct Runtime;
struct Snapshot;
class Worker;
enum class Result : uint8_t;

class Management {
 public:
  Management(std::string config_path, ConfigSet current, Runtime& rt, SnapshotStore& snapshots,
             HealthBoard& health, HealthChecker& checker, AccessLog& access_log);
  ~Management();

  // Opens the control socket and metrics listener; false (logged) if they cannot be opened.
  bool open();
  // Serves until SIGTERM/SIGINT; returns the grace period to drain with.
  uint32_t run();

 private:
  struct Client {
    std::string in;
    bool metrics = false;
    uint64_t last_ms = 0;
  };

  // --- configuration changes
  bool reload(std::vector<std::string>& errors);
  // Validates `next` and builds its snapshot; then commit() publishes it. Edits write their
  // file between the two, so nothing is written that would not load.
  std::unique_ptr<Snapshot> prepare(const ConfigSet& next, std::vector<std::string>& errors);
  // Returns how many tunnels it closed (users deleted, disabled or with a new password).
  size_t commit(std::unique_ptr<Snapshot> snap, ConfigSet next);
  size_t kick_everywhere(const std::string& user, Result why);

  // --- control requests (control_commands.cpp)
  std::string handle(const std::string& line);
  using Args = rapidjson::Value;
  std::string cmd_status();
  std::string cmd_reload();
  std::string cmd_stats();
  std::string cmd_user_list();
  std::string cmd_user_edit(const std::string& cmd, const Args& a);
  std::string cmd_set_proxy(const Args& a);
  std::string cmd_show_proxy(const Args& a);
  std::string cmd_list_assignments();
  std::string cmd_proxy_list();
  std::string cmd_proxy_edit(const std::string& cmd, const Args& a);
  std::string cmd_proxy_test(const Args& a);
  std::string cmd_connections(const Args& a);
  std::string cmd_kick(const Args& a);
  // Loads the files fresh (hand edits count), applies `edit`, writes the changed file, publishes.
  std::string edit_users(const std::function<std::string(std::vector<User>&)>& edit);
  std::string edit_proxies(const std::function<std::string(std::vector<UpstreamProxy>&)>& edit);

  // --- metrics (prometheus.cpp)
  std::string render_metrics();

  // --- workers
  WorkerStats collect_stats();
  std::vector<ConnectionInfo> collect_connections(const std::string& user);
  template <typename T>
  std::vector<T> ask_workers(std::function<T(Worker&)> fn);

  // --- sockets
  bool open_control_socket(const std::string& path);
  // `written`: the operator wrote metrics.listen, so failing to bind it is fatal; the default
  // address only warns.
  bool open_metrics(const std::optional<SocketAddress>& where, bool written);
  void accept_on(int listen_fd, bool metrics);
  void serve(int fd);
  void close_client(int fd);
  void sync_listeners();

  std::string config_path_;
  ConfigSet current_;
  Runtime& rt_;
  SnapshotStore& snapshots_;
  HealthBoard& health_;
  HealthChecker& checker_;
  AccessLog& access_log_;
  uint64_t generation_ = 1;
  uint64_t started_ms_;
  int epfd_ = -1;
  int sigfd_ = -1;
  int control_fd_ = -1;
  std::string control_path_;
  int metrics_fd_ = -1;
  std::string metrics_text_;  // the address it listens on
  std::map<int, Client> clients_;
  size_t last_closed_ = 0;
};

}  // namespace up
