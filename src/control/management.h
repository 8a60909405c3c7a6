#pragma once
// The management thread: after start-up it owns the control socket, the metrics endpoint,
// signals, reloads and live edits. It publishes snapshots and asks workers (through their
// mailboxes) for counters and tunnel lists; it never blocks a worker, and workers never wait
// for it. Nor does it wait for them or for an upstream probe: a request that needs either is
// answered when the result arrives, and other clients are served meanwhile.
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "control/config_stamps.h"
#include "control/usage_store.h"
#include "core/worker_stats.h"
#include "store/fleet_usage.h"
#include "store/pg_link.h"
#include "uringproxy/config.h"

namespace up {

class AccessLog;
class HealthBoard;
class HealthChecker;
class SnapshotStore;
struct Runtime;
struct Snapshot;
struct Upstream;
class Worker;
struct UserShared;
enum class Result : uint8_t;

class Management {
 public:
  // `stamps`: taken before `current` was read (ConfigStamps::take).
  Management(std::string config_path, ConfigSet current, ConfigStamps stamps, Runtime& rt,
             SnapshotStore& snapshots, HealthBoard& health, HealthChecker& checker,
             AccessLog& access_log);
  ~Management();

  // Opens the control socket and metrics listener; false (logged) if they cannot be opened.
  bool open();
  // The PostgreSQL store (store.type postgres): its link, already open, and the groups the main
  // config names (the store's are added to them at every read).
  void adopt_store(std::unique_ptr<StoreLink> link);
  // Serves until SIGTERM/SIGINT; returns the grace period to drain with.
  uint32_t run();
  // After the workers have stopped (their counters are final): adds what they counted since
  // the last flush to the usage file or the store, waiting up to a few seconds for the store.
  void final_flush();

 private:
  struct Client {
    uint64_t id = 0;  // tells a reused fd apart from the client an answer was meant for
    bool metrics = false;
    bool waiting = false;      // its answer is being worked out (workers, a probe)
    bool close_after = false;  // metrics: one answer per connection
    uint32_t armed = 0;        // the epoll events asked for
    std::string in;
    std::string out;           // answer bytes the client has not read yet
    uint64_t last_ms = 0;      // last progress either way
  };
  // Where an answer goes once it is ready; it may be called at once or on a later loop turn.
  using Reply = std::function<void(std::string)>;
  // After an edit or reload is published and the workers have closed what it ended.
  using Committed = std::function<void(uint64_t generation, size_t closed)>;

  // --- configuration changes
  // False (with `errors`) when the files do not load; `then` runs once the workers are done.
  bool reload(std::vector<std::string>& errors, Committed then);
  // Validates `next` and builds its snapshot; then commit() publishes it. Edits write their
  // file between the two, so nothing is written that would not load.
  std::unique_ptr<Snapshot> prepare(const ConfigSet& next, std::vector<std::string>& errors);
  // What publishing a configuration does besides the snapshot swap.
  struct Changes {
    std::vector<std::string> kick;  // users deleted, disabled or given a new password
    bool listeners = false;         // the workers re-sync their listening sockets
    // A one-user edit: only that user's quota is looked at again, not every user's.
    std::optional<std::string> only_user;
  };
  Changes changes_to(const ConfigSet& next) const;
  // Makes `next` the configuration in force and publishes its snapshot.
  void commit(std::unique_ptr<Snapshot> snap, ConfigSet next, Committed then);
  // Publishes `snap` (current_ already holds its configuration) at once; the workers then make
  // `ch` happen, and `then` gets how many tunnels they closed.
  void publish(std::unique_ptr<Snapshot> snap, Changes ch, Committed then);
  void kick_everywhere(const std::string& user, Result why, std::function<void(size_t)> then);

  // --- control requests (control_commands.cpp)
  void handle(const std::string& line, const Reply& done);
  using Args = rapidjson::Value;
  void cmd_status(const Reply& done);
  void cmd_reload(const Reply& done);
  void cmd_stats(const Reply& done);
  std::string cmd_user_list();
  void cmd_user_edit(const std::string& cmd, const Args& a, const Reply& done);
  void cmd_set_proxy(const Args& a, const Reply& done);
  std::string cmd_show_proxy(const Args& a);
  std::string cmd_list_assignments();
  std::string cmd_proxy_list();
  void cmd_proxy_edit(const std::string& cmd, const Args& a, const Reply& done);
  void add_proxy(const UpstreamProxy& p, const Reply& done);
  void cmd_proxy_test(const Args& a, const Reply& done);
  void cmd_connections(const Args& a, const Reply& done);
  void cmd_kick(const Args& a, const Reply& done);
  // --- reverse agents (agent_control.cpp)
  std::string cmd_agents();
  void cmd_agent(const std::string& cmd, const Args& a, const Reply& done);
  // `refused` gets a refusal that comes later (the store did not take the edit).
  std::string edit_agents(const std::function<std::string(std::vector<Agent>&)>& edit,
                          Committed then, Reply refused = nullptr);
  std::string edit_agents_in_store(const std::function<std::string(std::vector<Agent>&)>& edit,
                                   Committed then, Reply refused);
  // The agents after an edit committed in the store (here or by another node), applied to what
  // this node serves: the users and upstreams are shared; links the change ends are closed.
  void apply_agents(std::vector<Agent> next, Committed then);
  // Kicks the links of agents in `before` that current_.agents removed, disabled or changed.
  void close_ended_agent_links(std::vector<Agent>& before);
  // Edits user `name` (absent: nullopt; set it to nullopt to delete), writes users.json and
  // publishes. "" when done (then `then` runs), else the refusal. It starts from the users in
  // force while the files are as they were read; after a hand edit, from the files.
  using UserEdit = std::function<std::string(std::optional<User>&)>;
  // `refused` gets a refusal that comes later (the store did not take the edit).
  std::string edit_user(const std::string& name, const UserEdit& edit, Committed then,
                        Reply refused = nullptr);
  std::string edit_user_in_store(const std::string& name, const UserEdit& edit, Committed then,
                                 Reply refused);
  // A user edit committed in the store (here or by another node) applied to what this node
  // serves: only that user's record is made anew; their tunnels close if it ends them.
  void apply_user(const std::string& name, const std::optional<User>& after, Committed then);
  std::string edit_user_from_files(const std::string& name, const UserEdit& edit,
                                   Committed then);
  std::string edit_proxies(const std::function<std::string(std::vector<UpstreamProxy>&)>& edit,
                           Committed then, Reply refused = nullptr);
  std::string edit_proxies_in_store(
      const std::function<std::string(std::vector<UpstreamProxy>&)>& edit, Committed then,
      Reply refused);
  // Caches the records of up to `batch` more users.
  void cache_user_records(size_t batch);

  // --- the PostgreSQL store (store_sync.cpp)
  void store_step(uint64_t now, bool ready);
  void sync_store_fd();
  void store_records(StoreLink::Records r);
  // Another node's edit of one user (their row as read after its commit; !found: deleted), of
  // the upstreams or of the agents: applied without reading or rebuilding anything else.
  void store_user(const std::string& name, bool found, const std::string& record);
  void store_proxies(const std::string& doc);
  void store_agents(const std::string& doc);
  // Deletes a bounded batch of usage rows of periods that ended (every node, now and then).
  void prune_store_usage(uint64_t now);

  // --- quotas (quota_control.cpp)
  // Reads the usage file and refuses users already over quota; false (logged) when it cannot
  // be read.
  bool open_usage();
  std::string usage_file_for_config() const;
  // A postgres node: usage is the fleet's, kept in the store (fleet_), not in a file.
  bool fleet_usage() const;
  // Adds the counts fleet_ holds to the store in one statement and reads the totals back.
  void flush_to_store();
  // Sets usage_ to the fleet's usage as this node knows it (fleet_usage() only).
  void fleet_view();
  // The configuration in force changed: re-lists the users with a quota and re-checks them.
  void refresh_quotas(bool initial = false);
  // The same for one user after an edit of that user alone (`u` null: deleted): O(1) in the
  // number of users, where refresh_quotas is O(users).
  void refresh_quota_of(const std::string& name, const User* u);
  // Every store.flush_interval_ms: adds the bytes the workers counted since the last flush to
  // each user's usage, then check_quotas() and writes the usage file if it changed.
  void flush_usage();
  void add_worker_counts(const std::vector<std::string>& names,
                         const std::vector<std::vector<uint64_t>>& per_worker);
  // Rolls periods over and sets each user's over_quota flag; a user newly over has their
  // tunnels closed.
  void check_quotas();
  struct QuotaUser;
  void check_quota(const QuotaUser& q, int64_t now);
  void save_usage_if_changed();
  std::string cmd_usage(const Args& a);
  void cmd_quota_set(const Args& a, const Reply& done);
  void cmd_quota_reset(const Args& a, const Reply& done);
  void quota_reset_in_store(const std::string& name, const Reply& done);
  void quota_metrics(std::string& o);

  // --- metrics (prometheus.cpp)
  void render_metrics(std::function<void(std::string)> then);
  std::string metrics_text(WorkerStats& s);

  // --- work that finishes off this thread: worker answers and upstream probes
  // Runs fn on every worker; `then` runs here once all have, or after 5 s with those that did
  // (a missing answer is a default T).
  template <typename T>
  void ask_workers(std::function<T(Worker&)> fn, std::function<void(std::vector<T>)> then);
  void collect_stats(std::function<void(WorkerStats)> then);
  // Runs `work` on a thread of its own (it may block: a probe, a password hash); `then` gets its
  // result here, or `if_no_thread` when no thread can be started.
  void off_thread(std::function<std::string()> work, std::function<void(std::string)> then,
                  std::string if_no_thread);
  // The upstream probe (blocks up to health_check.timeout_ms); `then` gets "" or what failed.
  void probe_async(std::shared_ptr<const Upstream> u, std::function<void(std::string)> then);
  void finish_pending(uint64_t now);

  // --- sockets
  bool open_control_socket(const std::string& path);
  // `written`: the operator wrote metrics.listen, so failing to bind it is fatal; the default
  // address only warns.
  bool open_metrics(const std::optional<SocketAddress>& where, bool written);
  void accept_on(int listen_fd, bool metrics);
  bool evict_oldest_idle(bool metrics);
  void serve(int fd, uint32_t events);
  void advance(int fd);
  void answer_http(int fd, Client& c);
  void deliver(int fd, uint64_t id, std::string text);
  bool flush(int fd, Client& c);
  void arm(int fd, Client& c);
  void close_client(int fd);

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
  uint64_t next_client_id_ = 0;
  std::vector<int> resume_;  // clients answered off-turn: serve their next request
  struct Wake;
  std::shared_ptr<Wake> wake_;  // workers and probe threads wake this loop through it
  struct WorkerAsk {
    std::shared_ptr<std::atomic<size_t>> left;
    uint64_t deadline_ms;
    std::function<void()> then;
  };
  std::vector<WorkerAsk> asks_;
  struct ThreadJob;
  std::list<ThreadJob> jobs_;
  // The files current_ was read from (or last written): an edit starts from current_ while
  // they are unchanged, instead of reading and checking every user again.
  ConfigStamps stamps_;
  std::string cost_hash_;  // the hash the verifier's dummy cost was last matched to
  // users.json as records: user_records_[i] is current_.users[i] for every i cached so far
  // (the loop caches them while idle; a reload starts over), and the buffer the file is
  // written from.
  std::vector<std::string> user_records_;
  std::string users_text_;
  // Quotas: the users that have one (in users.json order), what each worker had counted for
  // them at the last flush (an absent entry is taken as the baseline at the next), and their
  // usage (kept in usage_path_; empty path = nowhere to keep it).
  struct QuotaUser {
    std::string name;
    uint64_t quota_bytes = 0;
    QuotaPeriod period = QuotaPeriod::none;
    UserShared* state = nullptr;  // owned by the UserBoard
  };
  std::vector<QuotaUser> quota_users_;
  StringMap<size_t> quota_index_;             // name -> index in quota_users_
  std::vector<StringMap<uint64_t>> worker_seen_;  // per worker: name -> bytes counted
  UsageBook usage_;
  std::string usage_path_;
  bool usage_changed_ = false;
  FleetUsage fleet_;  // a postgres node: counts not yet in the store, and the fleet's totals
  bool flush_pending_ = false;
  uint64_t last_flush_ms_ = 0;
  std::unique_ptr<StoreLink> store_;  // null with the JSON store
  int store_fd_ = -1;                 // registered with epfd_
  uint32_t store_events_ = 0;
  std::map<std::string, GroupConfig> file_groups_;  // the main config's groups
  uint64_t last_usage_prune_ms_ = 0;
};

}  // namespace up
