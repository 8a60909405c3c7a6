#pragma once
// The PostgreSQL store's schema (docs/configuration.md#store): numbered migrations applied by
// `uringproxy --migrate`, each once, all in one transaction, so a database is always at one
// known version.
#include <string>

#include "uringproxy/config.h"

struct pg_conn;  // libpq's PGconn

namespace up {

// "store.dsn (host H)": how messages name the database, never with its password.
std::string store_where(const StoreConfig& store);
// store.password_file's first line ("" without one); false with `error` when unreadable.
bool read_store_password(const StoreConfig& store, std::string& password, std::string& error);

// Connects with store.dsn (and store.password_file); null with `error` naming the DSN's host,
// never the password. Free with PQfinish.
pg_conn* connect_store(const StoreConfig& store, std::string& error);

// Inside a transaction: "" when the schema is at the version this build knows, else why
// (never migrated, older: run --migrate; newer: upgrade uringproxy).
std::string check_schema_version(pg_conn* c, const StoreConfig& store);

// The newest schema version this build knows.
int store_schema_version();

// Connects with store.dsn (and store.password_file), creates or upgrades the schema, and
// returns "" with `done` saying what happened, or the reason it did not (naming the DSN's
// host, never the password). A database at a newer version than this build knows is refused.
std::string migrate_store(const StoreConfig& store, std::string& done);

}  // namespace up
