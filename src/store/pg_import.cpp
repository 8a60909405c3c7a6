#include "store/pg_import.h"

#include <libpq-fe.h>

#include <memory>

#include "store/pg_schema.h"

namespace up {

namespace {

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};

std::string trimmed(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Runs `sql` with text parameters; "" or the server's message.
std::string exec(PGconn* c, const char* sql, std::initializer_list<const std::string*> params) {
  std::vector<const char*> values;
  for (const std::string* p : params) values.push_back(p->c_str());
  PGresult* r = PQexecParams(c, sql, static_cast<int>(values.size()), nullptr, values.data(),
                             nullptr, nullptr, 0);
  ExecStatusType st = PQresultStatus(r);
  PQclear(r);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? "" : trimmed(PQerrorMessage(c));
}

}  // namespace

std::string import_into_store(const StoreConfig& store, const std::vector<User>& users,
                              const std::vector<UpstreamProxy>& proxies,
                              const std::vector<Agent>& agents, std::string& done) {
  std::string error;
  std::unique_ptr<PGconn, ConnDeleter> c(connect_store(store, error));
  if (!c) return error;
  PGconn* pg = c.get();
  if (std::string e = exec(pg, "BEGIN", {}); !e.empty()) return e;
  if (std::string e = check_schema_version(pg, store); !e.empty()) return e;
  // The records are stored as the files write them, so the daemon's loader reads them back.
  for (const User& u : users) {
    std::string record = user_json_record(u);
    std::string e = exec(pg,
                         "INSERT INTO users (username, record) VALUES ($1, $2::jsonb) "
                         "ON CONFLICT (username) DO UPDATE SET record = excluded.record, "
                         "updated_at = now()",
                         {&u.username, &record});
    if (!e.empty()) return "user " + u.username + ": " + e + " (nothing was imported)";
  }
  for (const UpstreamProxy& p : proxies) {
    std::string doc = proxies_to_json({p});
    std::string e = exec(pg,
                         "INSERT INTO upstreams (id, record) VALUES ($1, ($2::jsonb)->'proxies'->0) "
                         "ON CONFLICT (id) DO UPDATE SET record = excluded.record, "
                         "updated_at = now()",
                         {&p.id, &doc});
    if (!e.empty()) return "upstream " + p.id + ": " + e + " (nothing was imported)";
  }
  for (const Agent& a : agents) {
    std::string doc = agents_to_json({a});
    std::string e = exec(pg,
                         "INSERT INTO agents (id, record) VALUES ($1, ($2::jsonb)->'agents'->0) "
                         "ON CONFLICT (id) DO UPDATE SET record = excluded.record, "
                         "updated_at = now()",
                         {&a.id, &doc});
    if (!e.empty()) return "agent " + a.id + ": " + e + " (nothing was imported)";
  }
  // NOTIFY is delivered at COMMIT: listeners see the import whole or not at all.
  std::string e = exec(pg, "NOTIFY uringproxy_changes, 'import'", {});
  if (e.empty()) e = exec(pg, "COMMIT", {});
  if (!e.empty()) return e + " (nothing was imported)";
  done = "imported " + std::to_string(users.size()) + " user(s)" +
         (agents.empty() ? " and " : ", ") + std::to_string(proxies.size()) + " upstream(s)" +
         (agents.empty() ? "" : " and " + std::to_string(agents.size()) + " agent(s)");
  return "";
}

}  // namespace up
