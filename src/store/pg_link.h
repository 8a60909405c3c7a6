#pragma once
// The daemon's connection to the PostgreSQL store (docs/configuration.md#store): one libpq
// connection, non-blocking, driven by the management loop (its socket polled there; never
// touched by a worker). It LISTENs for edits, reads the store in full after connecting, reads
// back only what another session's NOTIFY names (one user, the upstreams, the agents; anything
// else: all), runs edits one at a time, and reconnects with backoff.
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "uringproxy/config.h"

struct pg_conn;  // libpq's PGconn
struct pg_result;  // libpq's PGresult

namespace up {

class StoreLink {
 public:
  // The store read in one snapshot, as documents in the files' shapes.
  struct Records {
    std::string users;    // {"users": [...]}
    std::string proxies;  // {"proxies": [...]}
    std::string groups;   // {"groups": {...}}
    std::string agents;   // {"agents": [...]}
  };
  explicit StoreLink(StoreConfig store);
  // Runs just before a socket it reported through fd() is closed.
  std::function<void(int)> forget_fd;
  ~StoreLink();
  StoreLink(const StoreLink&) = delete;
  StoreLink& operator=(const StoreLink&) = delete;

  // A full read finished (after a (re)connect, another node's edit, or resync()).
  std::function<void(Records)> on_records;
  // A read that did not apply (schema at another version): why, for the log.
  std::function<void(std::string)> on_read_error;
  // Another node edited user `name`: their row as read after the commit (`record` the row's
  // JSON; `found` false: no such row any more).
  std::function<void(std::string name, bool found, std::string record)> on_user;
  // Another node edited the upstreams: all of them as read after the commit ({"proxies": [...]}).
  std::function<void(std::string proxies)> on_proxies;
  // Another node edited the agents: all of them as read after the commit ({"agents": [...]}).
  std::function<void(std::string agents)> on_agents;

  // Start-up: connects and reads the store in full before the daemon serves, polling the
  // socket here (no worker runs yet). "" with `first`, else why, naming the DSN's host.
  std::string open(uint64_t timeout_ms, Records& first);

  // The management loop: the socket to poll (-1: none now) and whether to wait for writing.
  int fd() const;
  bool wants_write() const;
  // Call with ready = true when the socket is ready, and with false on every loop turn
  // (connect deadline, retry backoff).
  void step(uint64_t now_ms, bool ready);

  bool up() const { return state_ == State::ready; }
  // "store.dsn (host H)": how messages name the database without its password.
  std::string where() const;

  // Runs one SQL statement with text parameters after what is queued; `then` gets "" or the
  // server's message. Refused at once (the reason returned) while the store is down.
  std::string execute(std::string sql, std::vector<std::string> params,
                      std::function<void(std::string)> then);
  // What a query() came to: "" and its rows (text, first result), or the server's message.
  // `sent`: the connection was lost with the statement sent and unanswered, so it may have
  // committed (a caller that must never apply it twice drops it).
  struct Answer {
    std::string error;
    bool sent = false;
    std::vector<std::vector<std::string>> rows;
  };
  // As execute(), and `then` gets the rows the statement returned.
  std::string query(std::string sql, std::vector<std::string> params,
                    std::function<void(Answer)> then);
  // Reads the store in full again (after what is queued).
  void resync();
  // What a NOTIFY payload names (pg_notify's second argument, "NODE user NAME", "NODE
  // upstreams", "NODE agents", "NODE usage NAME"): the read it calls for, queued after what is
  // queued.
  void changed(std::string_view payload);
  // Start-up and shutdown, before and after the management loop: runs the link on its own
  // until nothing is queued or in flight (true), or the link goes down or `timeout_ms` passes.
  bool drain(uint64_t timeout_ms);

 private:
  enum class State : uint8_t { idle, connecting, ready, backoff };
  enum class Read : uint8_t { none, all, user, proxies, agents };
  struct Job {
    Read read = Read::none;  // none: `sql` with `params`; user: the row of params[0]
    std::string sql;
    std::vector<std::string> params;
    std::function<void(std::string)> then;
    std::function<void(Answer)> answered;  // query(): instead of `then`
  };
  void start_connect(uint64_t now_ms);
  void connected(uint64_t now_ms);
  void lost(const std::string& why, uint64_t now_ms);
  void close_conn();
  void send_next();
  void read_results();
  void finish_job(std::vector<pg_result*>& results);
  void take_notifications();
  bool queued(Read read, const std::string& user) const;

  StoreConfig store_;
  pg_conn* conn_ = nullptr;
  State state_ = State::idle;
  bool polling_write_ = false;  // connecting: PQconnectPoll asked for write readiness
  bool flushing_ = false;       // a query is not fully sent yet
  bool in_flight_ = false;
  std::deque<Job> jobs_;
  std::vector<pg_result*> results_;  // of the job in flight
  uint64_t deadline_ms_ = 0;  // connecting: give up; backoff: try again
  uint32_t backoff_ms_ = 0;
  int backend_pid_ = 0;
  std::string last_error_;
  bool warned_ = false;  // the loss was logged (once per outage)
  bool opened_ = false;  // start-up is over: losses are logged from now on
};

}  // namespace up
