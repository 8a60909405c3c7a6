#include "store/pg_link.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>

#include "core/clock.h"
#include "core/log.h"
#include "store/pg_schema.h"
#include "store/store_change.h"

namespace up {

namespace {

// A connection attempt that has not finished by then is given up (libpq's connect_timeout
// applies only to its blocking calls).
constexpr uint64_t connect_deadline_ms = 10000;
constexpr uint32_t first_backoff_ms = 250;
constexpr uint32_t max_backoff_ms = 5000;

// One statement, so one snapshot of the database: the schema version and every record, in the
// files' shapes so the daemon's loaders read them.
constexpr const char* kReadAll =
    "SELECT (SELECT coalesce(max(version), 0) FROM uringproxy_schema),"
    " '{\"users\":' || (SELECT coalesce(json_agg(record ORDER BY username), '[]') FROM users)::text"
    "   || '}',"
    " '{\"proxies\":' || (SELECT coalesce(json_agg(record ORDER BY id), '[]') FROM upstreams)::text"
    "   || '}',"
    " '{\"groups\":' || (SELECT coalesce(json_object_agg(name, record), '{}') FROM groups)::text"
    "   || '}',"
    " '{\"agents\":' || (SELECT coalesce(json_agg(record ORDER BY id), '[]') FROM agents)::text"
    "   || '}'";

// After another node's edit of one user, of the upstreams or of the agents: only what it
// changed.
constexpr const char* kReadUser = "SELECT record::text FROM users WHERE username = $1";
constexpr const char* kReadProxies =
    "SELECT '{\"proxies\":' || coalesce(json_agg(record ORDER BY id), '[]')::text || '}'"
    " FROM upstreams";
constexpr const char* kReadAgents =
    "SELECT '{\"agents\":' || coalesce(json_agg(record ORDER BY id), '[]')::text || '}'"
    " FROM agents";

std::string trimmed(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

}  // namespace

StoreLink::StoreLink(StoreConfig store) : store_(std::move(store)) {}

StoreLink::~StoreLink() { close_conn(); }

std::string StoreLink::where() const { return store_where(store_); }

int StoreLink::fd() const { return conn_ ? PQsocket(conn_) : -1; }

bool StoreLink::wants_write() const {
  return state_ == State::connecting ? polling_write_ : flushing_;
}

void StoreLink::close_conn() {
  if (conn_) {
    if (int fd = PQsocket(conn_); fd >= 0 && forget_fd) forget_fd(fd);
    PQfinish(conn_);
    conn_ = nullptr;
  }
  for (PGresult* r : results_) PQclear(r);
  results_.clear();
  in_flight_ = flushing_ = false;
}

void StoreLink::start_connect(uint64_t now_ms) {
  std::string password, error;
  if (!read_store_password(store_, password, error)) return lost(error, now_ms);
  // expand_dbname: the first "dbname" value is the whole DSN; a password from the file is
  // added after it, so it is never spliced into a connection string.
  const char* keys[] = {"dbname", password.empty() ? nullptr : "password", nullptr};
  const char* values[] = {store_.dsn.c_str(), password.c_str(), nullptr};
  conn_ = PQconnectStartParams(keys, values, 1);
  if (!conn_ || PQstatus(conn_) == CONNECTION_BAD)
    return lost(conn_ ? trimmed(PQerrorMessage(conn_)) : "out of memory", now_ms);
  state_ = State::connecting;
  polling_write_ = true;  // libpq: before the first PQconnectPoll, wait for writing
  deadline_ms_ = now_ms + connect_deadline_ms;
}

void StoreLink::connected(uint64_t now_ms) {
  (void)now_ms;
  if (PQsetnonblocking(conn_, 1) != 0) return lost(trimmed(PQerrorMessage(conn_)), now_ms);
  state_ = State::ready;
  backoff_ms_ = 0;
  backend_pid_ = PQbackendPID(conn_);
  if (warned_) UP_INFO("store: %s is back; reading it in full", where().c_str());
  warned_ = false;
  // LISTEN before the read: a commit after the read's snapshot is then always notified.
  // Notifications missed while away are covered by that full read.
  Job read;
  read.read = Read::all;
  jobs_.push_front(std::move(read));
  Job listen;
  listen.sql = "LISTEN uringproxy_changes";
  jobs_.push_front(std::move(listen));
  send_next();
}

void StoreLink::lost(const std::string& why, uint64_t now_ms) {
  last_error_ = why;
  bool was_up = state_ == State::ready;
  bool sent = in_flight_;  // jobs_.front() was sent and not answered
  close_conn();
  backoff_ms_ = backoff_ms_ ? std::min(backoff_ms_ * 2, max_backoff_ms) : first_backoff_ms;
  state_ = State::backoff;
  deadline_ms_ = now_ms + backoff_ms_;
  if (opened_ && !warned_) {
    UP_WARN("store: %s: %s%s; serving the last snapshot, edits are refused; retrying with "
            "backoff", where().c_str(), was_up ? "connection lost: " : "cannot connect: ",
            why.c_str());
    warned_ = true;
  }
  // What was queued cannot run on this connection: an edit is refused (a commit whose answer
  // was lost is read back by the full read on reconnect).
  std::deque<Job> jobs;
  jobs.swap(jobs_);
  for (Job& j : jobs) {
    if (j.then) j.then(where() + ": " + why);
    if (j.answered) {
      Answer a;
      a.error = where() + ": " + why;
      a.sent = sent;
      j.answered(std::move(a));
    }
    sent = false;
  }
}

std::string StoreLink::execute(std::string sql, std::vector<std::string> params,
                               std::function<void(std::string)> then) {
  if (state_ != State::ready)
    return "the store is down (" + where() + ": " + last_error_ +
           "); edits are refused until it is back, this node serves its last snapshot";
  Job j;
  j.sql = std::move(sql);
  j.params = std::move(params);
  j.then = std::move(then);
  jobs_.push_back(std::move(j));
  send_next();
  return "";
}

std::string StoreLink::query(std::string sql, std::vector<std::string> params,
                             std::function<void(Answer)> then) {
  if (state_ != State::ready)
    return "the store is down (" + where() + ": " + last_error_ + ")";
  Job j;
  j.sql = std::move(sql);
  j.params = std::move(params);
  j.answered = std::move(then);
  jobs_.push_back(std::move(j));
  send_next();
  return "";
}

// Whether a job that reads `read` (of `user`) waits unsent: one read sent later sees every
// commit notified until it is sent.
bool StoreLink::queued(Read read, const std::string& user) const {
  for (size_t i = in_flight_ ? 1 : 0; i < jobs_.size(); ++i)
    if (jobs_[i].read == Read::all ||
        (jobs_[i].read == read && (read != Read::user || jobs_[i].params[0] == user)))
      return true;
  return false;
}

void StoreLink::resync() {
  if (queued(Read::all, "")) return;
  Job j;
  j.read = Read::all;
  jobs_.push_back(std::move(j));
  send_next();
}

void StoreLink::changed(std::string_view payload) {
  StoreChange c = parse_store_change(payload);
  Job j;
  switch (c.kind) {
    case StoreChange::Kind::user:
      j.read = Read::user;
      j.params.push_back(std::move(c.user));
      break;
    case StoreChange::Kind::upstreams:
      j.read = Read::proxies;
      break;
    case StoreChange::Kind::agents:
      j.read = Read::agents;
      break;
    case StoreChange::Kind::usage:
      return;  // a quota reset: the fleet's totals come back with this node's next flush
    case StoreChange::Kind::all:
      return resync();  // an import, psql, another version: read everything
  }
  if (queued(j.read, j.params.empty() ? std::string() : j.params[0])) return;
  jobs_.push_back(std::move(j));
  send_next();
}

void StoreLink::send_next() {
  if (state_ != State::ready || in_flight_ || jobs_.empty()) return;
  const Job& j = jobs_.front();
  std::vector<const char*> values;
  for (const std::string& p : j.params) values.push_back(p.c_str());
  const char* sql = j.read == Read::all       ? kReadAll
                    : j.read == Read::user    ? kReadUser
                    : j.read == Read::proxies ? kReadProxies
                    : j.read == Read::agents  ? kReadAgents
                                              : j.sql.c_str();
  if (!PQsendQueryParams(conn_, sql,
                         static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                         nullptr, 0))
    return lost(trimmed(PQerrorMessage(conn_)), monotonic_ms());
  in_flight_ = true;
  int f = PQflush(conn_);
  if (f < 0) return lost(trimmed(PQerrorMessage(conn_)), monotonic_ms());
  flushing_ = f == 1;
}

void StoreLink::read_results() {
  while (in_flight_ && !PQisBusy(conn_)) {
    PGresult* r = PQgetResult(conn_);
    if (r) {
      results_.push_back(r);
      continue;
    }
    std::vector<PGresult*> results;
    results.swap(results_);
    in_flight_ = false;
    finish_job(results);
    if (state_ != State::ready) return;
  }
}

void StoreLink::finish_job(std::vector<PGresult*>& results) {
  Job j = std::move(jobs_.front());
  jobs_.pop_front();
  std::string error;
  for (PGresult* r : results) {
    ExecStatusType st = PQresultStatus(r);
    if (error.empty() && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
      error = trimmed(PQresultErrorMessage(r));
  }
  if (j.read == Read::user || j.read == Read::proxies || j.read == Read::agents) {
    PGresult* r = results.empty() ? nullptr : results.back();
    if (error.empty() && (!r || PQnfields(r) != 1 || PQntuples(r) > 1 ||
                          (j.read != Read::user && PQntuples(r) != 1)))
      error = "unexpected answer to the read";
    if (!error.empty()) {
      // Whatever kept this row from being read: read everything (the full read reports it).
      if (on_read_error) on_read_error(where() + ": cannot read what another node changed: " +
                                       error + "; reading the store in full");
      resync();
    } else if (j.read == Read::user && on_user) {
      bool found = PQntuples(r) == 1;
      on_user(j.params[0], found, found ? PQgetvalue(r, 0, 0) : "");
    } else if (j.read == Read::proxies && on_proxies) {
      on_proxies(PQgetvalue(r, 0, 0));
    } else if (j.read == Read::agents && on_agents) {
      on_agents(PQgetvalue(r, 0, 0));
    }
  } else if (j.read == Read::all) {
    PGresult* r = results.empty() ? nullptr : results.back();
    if (error.empty() && (!r || PQntuples(r) != 1 || PQnfields(r) != 5))
      error = "unexpected answer to the read";
    int version = error.empty() ? std::atoi(PQgetvalue(r, 0, 0)) : 0;
    if (error.empty() && version != store_schema_version())
      error = "the schema is at version " + std::to_string(version) + ", this uringproxy needs " +
              std::to_string(store_schema_version()) + " (uringproxy --migrate, or upgrade)";
    if (!error.empty()) {
      if (on_read_error) on_read_error(where() + ": cannot read the store: " + error);
    } else if (on_records) {
      Records rec{PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
                  PQgetvalue(r, 0, 4)};
      for (PGresult* x : results) PQclear(x);
      results.clear();
      on_records(std::move(rec));
    }
  } else if (j.answered) {
    Answer a;
    a.error = error;
    PGresult* r = results.empty() ? nullptr : results.front();
    if (error.empty() && r && PQresultStatus(r) == PGRES_TUPLES_OK) {
      int rows = PQntuples(r), cols = PQnfields(r);
      a.rows.reserve(static_cast<size_t>(rows));
      for (int i = 0; i < rows; ++i) {
        std::vector<std::string> row;
        row.reserve(static_cast<size_t>(cols));
        for (int c = 0; c < cols; ++c) row.emplace_back(PQgetvalue(r, i, c));
        a.rows.push_back(std::move(row));
      }
    }
    j.answered(std::move(a));
  } else if (j.then) {
    j.then(error);
  } else if (!error.empty()) {
    UP_WARN("store: %s: %s: %s", where().c_str(), j.sql.c_str(), error.c_str());
  }
  for (PGresult* x : results) PQclear(x);
  send_next();
}

void StoreLink::take_notifications() {
  while (PGnotify* n = PQnotifies(conn_)) {
    // Our own edits are applied when their commit is answered.
    if (n->be_pid != backend_pid_) changed(n->extra ? n->extra : "");
    PQfreemem(n);
  }
}

void StoreLink::step(uint64_t now_ms, bool ready) {
  switch (state_) {
    case State::idle:
      return start_connect(now_ms);
    case State::backoff:
      if (now_ms >= deadline_ms_) start_connect(now_ms);
      return;
    case State::connecting: {
      if (!ready) {
        if (now_ms >= deadline_ms_) lost("no answer within 10 s", now_ms);
        return;
      }
      PostgresPollingStatusType p = PQconnectPoll(conn_);
      if (p == PGRES_POLLING_OK) return connected(now_ms);
      if (p == PGRES_POLLING_FAILED) return lost(trimmed(PQerrorMessage(conn_)), now_ms);
      polling_write_ = p == PGRES_POLLING_WRITING;
      return;
    }
    case State::ready:
      if (!ready) return;
      if (flushing_) {
        int f = PQflush(conn_);
        if (f < 0) return lost(trimmed(PQerrorMessage(conn_)), now_ms);
        flushing_ = f == 1;
      }
      if (!PQconsumeInput(conn_)) return lost(trimmed(PQerrorMessage(conn_)), now_ms);
      read_results();
      if (state_ != State::ready) return;
      take_notifications();
      if (PQstatus(conn_) == CONNECTION_BAD) return lost(trimmed(PQerrorMessage(conn_)), now_ms);
      return;
  }
}

bool StoreLink::drain(uint64_t timeout_ms) {
  uint64_t deadline = monotonic_ms() + timeout_ms;
  while (state_ == State::ready && (in_flight_ || !jobs_.empty())) {
    uint64_t now = monotonic_ms();
    if (now >= deadline) return false;
    pollfd p{fd(), static_cast<short>(wants_write() ? POLLOUT : POLLIN), 0};
    int n = poll(&p, 1, static_cast<int>(std::min<uint64_t>(deadline - now, 100)));
    step(monotonic_ms(), n > 0);
  }
  return state_ == State::ready;
}

std::string StoreLink::open(uint64_t timeout_ms, Records& first) {
  bool got = false;
  std::string read_error;
  auto keep_records = std::move(on_records);
  auto keep_error = std::move(on_read_error);
  on_records = [&](Records r) {
    first = std::move(r);
    got = true;
  };
  on_read_error = [&](std::string e) { read_error = std::move(e); };
  uint64_t deadline = monotonic_ms() + timeout_ms;
  std::string result;
  step(monotonic_ms(), false);
  for (;;) {
    if (got || !read_error.empty()) break;
    if (state_ == State::backoff) {
      result = where() + ": cannot connect: " + last_error_;
      break;
    }
    uint64_t now = monotonic_ms();
    if (now >= deadline) {
      result = where() + ": no answer within " + std::to_string(timeout_ms / 1000) + " s";
      break;
    }
    pollfd p{fd(), static_cast<short>(wants_write() ? POLLOUT : POLLIN), 0};
    int n = p.fd >= 0 ? poll(&p, 1, static_cast<int>(std::min<uint64_t>(deadline - now, 100)))
                      : 0;
    step(monotonic_ms(), n > 0);
  }
  if (result.empty() && !read_error.empty()) result = read_error;
  on_records = std::move(keep_records);
  on_read_error = std::move(keep_error);
  if (!result.empty()) {
    close_conn();
    state_ = State::idle;
    return result;
  }
  opened_ = true;
  return "";
}

}  // namespace up
