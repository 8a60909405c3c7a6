#include "store/pg_schema.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <fstream>
#include <memory>

namespace up {

namespace {

// Migration i (1-based) takes the schema from version i - 1 to i. Append; never edit one that
// has shipped. Records are kept as the JSON the files use, so a field added later needs no
// migration.
constexpr const char* kMigrations[] = {
    // 1: users, upstreams, agents and groups by key; usage per user, node and period.
    "CREATE TABLE users (username text PRIMARY KEY, record jsonb NOT NULL,"
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE upstreams (id text PRIMARY KEY, record jsonb NOT NULL,"
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE agents (id text PRIMARY KEY, record jsonb NOT NULL,"
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE groups (name text PRIMARY KEY, record jsonb NOT NULL,"
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE usage (username text NOT NULL, node text NOT NULL,"
    "  period_start bigint NOT NULL, used_bytes bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (username, node, period_start));",
    // 2: the last usage flush each node committed, so a flush whose answer was lost is sent
    // again without being added twice.
    "CREATE TABLE usage_flushes (node text PRIMARY KEY, seq bigint NOT NULL);",
};
constexpr int kVersion = static_cast<int>(sizeof kMigrations / sizeof kMigrations[0]);

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;
using Result = std::unique_ptr<PGresult, ResultDeleter>;

std::string trimmed(const char* msg) {
  std::string s = msg ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Runs `sql`; "" or the server's message.
std::string run(PGconn* c, const char* sql, Result* out = nullptr) {
  Result r(PQexec(c, sql));
  ExecStatusType st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return trimmed(PQerrorMessage(c));
  if (out) *out = std::move(r);
  return "";
}

std::string where_of(const StoreConfig& store) {
  return "store.dsn (host " + (store.dsn_host.empty() ? std::string("default") : store.dsn_host) +
         ")";
}

}  // namespace

int store_schema_version() { return kVersion; }

std::string store_where(const StoreConfig& store) { return where_of(store); }

bool read_store_password(const StoreConfig& store, std::string& password, std::string& error) {
  password.clear();
  if (store.password_file.empty()) return true;
  std::ifstream f(store.password_file);
  if (!f || !std::getline(f, password)) {
    error = "store.password_file: cannot read " + store.password_file;
    return false;
  }
  return true;
}

pg_conn* connect_store(const StoreConfig& store, std::string& error) {
  std::string password;
  if (!read_store_password(store, password, error)) return nullptr;
  // expand_dbname: the first "dbname" value is the whole DSN; a password from the file is
  // added after it, so it is never spliced into a connection string.
  const char* keys[] = {"dbname", password.empty() ? nullptr : "password", nullptr};
  const char* values[] = {store.dsn.c_str(), password.c_str(), nullptr};
  Conn c(PQconnectdbParams(keys, values, 1));
  if (!c || PQstatus(c.get()) != CONNECTION_OK) {
    error = where_of(store) + ": cannot connect: " +
            trimmed(c ? PQerrorMessage(c.get()) : "out of memory");
    return nullptr;
  }
  return c.release();
}

std::string check_schema_version(pg_conn* c, const StoreConfig& store) {
  Result r;
  std::string e = run(c, "SELECT coalesce(max(version), 0) FROM uringproxy_schema", &r);
  if (!e.empty())
    return where_of(store) + ": no uringproxy schema (run uringproxy --migrate first): " + e;
  int at = std::atoi(PQgetvalue(r.get(), 0, 0));
  if (at < kVersion)
    return where_of(store) + ": the schema is at version " + std::to_string(at) +
           "; run uringproxy --migrate (this uringproxy needs " + std::to_string(kVersion) + ")";
  if (at > kVersion)
    return where_of(store) + ": the schema is at version " + std::to_string(at) +
           ", newer than this uringproxy knows (" + std::to_string(kVersion) +
           "); upgrade uringproxy";
  return "";
}

std::string migrate_store(const StoreConfig& store, std::string& done) {
  std::string where = where_of(store);
  std::string error;
  Conn c(connect_store(store, error));
  if (!c) return error;
  if (std::string e = run(c.get(), "BEGIN"); !e.empty()) return where + ": " + e;
  // One migrator at a time: the table lock holds until COMMIT.
  Result r;
  std::string e = run(c.get(),
                      "CREATE TABLE IF NOT EXISTS uringproxy_schema (version integer NOT NULL);"
                      "LOCK TABLE uringproxy_schema IN ACCESS EXCLUSIVE MODE;");
  if (e.empty()) e = run(c.get(), "SELECT coalesce(max(version), 0) FROM uringproxy_schema", &r);
  if (!e.empty()) return where + ": " + e;
  int at = std::atoi(PQgetvalue(r.get(), 0, 0));
  if (at > kVersion) {
    run(c.get(), "ROLLBACK");
    return where + ": the schema is at version " + std::to_string(at) +
           ", newer than this uringproxy knows (" + std::to_string(kVersion) +
           "); upgrade uringproxy";
  }
  for (int v = at + 1; v <= kVersion; ++v) {
    e = run(c.get(), kMigrations[v - 1]);
    if (!e.empty()) {
      run(c.get(), "ROLLBACK");
      return where + ": migration to version " + std::to_string(v) + " failed (nothing was "
             "changed): " + e;
    }
  }
  e = run(c.get(), ("DELETE FROM uringproxy_schema; INSERT INTO uringproxy_schema VALUES (" +
                    std::to_string(kVersion) + ")")
                       .c_str());
  if (e.empty()) e = run(c.get(), "COMMIT");
  if (!e.empty()) return where + ": " + e;
  done = at == kVersion ? "store: the schema is already at version " + std::to_string(at)
                        : "store: schema migrated from version " + std::to_string(at) + " to " +
                              std::to_string(kVersion);
  return "";
}

}  // namespace up
