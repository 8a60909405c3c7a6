"""docs/configuration.md#store: `uringproxy --migrate` and `uringproxyctl store import` against a
PostgreSQL cluster the test starts itself. The schema is created in one transaction, migrating
is idempotent, a schema newer than the binary knows is refused, a failed connection names the
DSN's host (never the password); import loads the users and upstreams files whole or not at
all."""
import json
import subprocess

import pytest

import pg_cluster
from ctl_helpers import run_ctl
from harness import proxy_binary, users_doc
from servers import free_port

pytestmark = [pytest.mark.uringproxy_only, pg_cluster.needs_postgres]

TABLES = "agents,groups,upstreams,uringproxy_schema,usage,usage_flushes,users"


cluster = pg_cluster.cluster_fixture(migrated=False)


def write_config(tmp_path, dsn):
    cfg = tmp_path / "uringproxy.json"
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1"}],
        "users_file": "users.json", "proxies_file": "external_proxy.json",
        "store": {"type": "postgres", "dsn": dsn, "node": "edge-1"}}))
    return cfg


def migrate(tmp_path, dsn):
    cfg = write_config(tmp_path, dsn)
    r = subprocess.run([proxy_binary(), "--config", str(cfg), "--migrate"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).decode()


def test_migrate_creates_the_schema_once(tmp_path, cluster):
    rc, out = migrate(tmp_path, cluster.dsn)
    assert rc == 0 and "schema migrated from version 0 to 2" in out, out
    tables = cluster.query("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                           "WHERE schemaname = 'public'")
    assert tables == TABLES
    assert cluster.query("SELECT version FROM uringproxy_schema") == "2"
    rc, out = migrate(tmp_path, cluster.dsn)
    assert rc == 0 and "already at version 2" in out, out
    assert cluster.query("SELECT count(*) FROM uringproxy_schema") == "1"


def test_migrate_upgrades_a_version_1_schema(tmp_path, cluster):
    assert migrate(tmp_path, cluster.dsn)[0] == 0
    # Version 1 as it shipped: without usage_flushes; its rows stay.
    cluster.query("BEGIN; DROP TABLE usage_flushes; UPDATE uringproxy_schema SET version = 1;"
                  "INSERT INTO usage VALUES ('old', 'edge-1', 0, 7); COMMIT")
    rc, out = migrate(tmp_path, cluster.dsn)
    assert rc == 0 and "schema migrated from version 1 to 2" in out, out
    assert cluster.query("SELECT version FROM uringproxy_schema") == "2"
    assert cluster.query("SELECT count(*) FROM usage_flushes") == "0"
    assert cluster.query("SELECT used_bytes FROM usage WHERE username = 'old'") == "7"
    cluster.query("DELETE FROM usage WHERE username = 'old'")


def test_migrate_refuses_a_newer_schema(tmp_path, cluster):
    assert migrate(tmp_path, cluster.dsn)[0] == 0
    cluster.query("UPDATE uringproxy_schema SET version = 99")
    try:
        rc, out = migrate(tmp_path, cluster.dsn)
        assert rc == 1, out
        assert "the schema is at version 99, newer than this uringproxy knows (2)" in out, out
        assert cluster.query("SELECT version FROM uringproxy_schema") == "99"  # untouched
    finally:
        cluster.query("UPDATE uringproxy_schema SET version = 2")


def test_migrate_unreachable_names_the_host_not_the_password(tmp_path):
    port = free_port()  # nothing listens there
    rc, out = migrate(tmp_path, f"host=127.0.0.1 port={port} dbname=x user=u password=s3cretpw")
    assert rc == 1, out
    assert "store.dsn (host 127.0.0.1): cannot connect" in out, out
    assert "s3cretpw" not in out, out


def test_migrate_needs_a_postgres_store(tmp_path):
    cfg = tmp_path / "uringproxy.json"
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1"}],
        "users_file": "users.json"}))
    r = subprocess.run([proxy_binary(), "--config", str(cfg), "--migrate"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and b"--migrate needs" in r.stderr, r


PROXIES = {"proxies": [{"id": "us1", "type": "socks5", "address": "10.0.0.1", "port": 1080,
                        "password": "upstream-pw", "group": "us"}]}


def test_store_import_loads_users_and_upstreams(tmp_path, cluster):
    assert migrate(tmp_path, cluster.dsn)[0] == 0
    users = users_doc()
    users["users"][1]["quota_bytes"] = 1000
    users["users"][1]["quota_period"] = "week"
    (tmp_path / "users.json").write_text(json.dumps(users))
    (tmp_path / "external_proxy.json").write_text(json.dumps(PROXIES))
    cfg = tmp_path / "uringproxy.json"
    for _ in range(2):  # a second import replaces, it does not duplicate
        r = run_ctl(["--config", str(cfg), "store", "import"])
        assert r.rc == 0 and r.out.strip() == "✓ imported 5 user(s) and 1 upstream(s)", r
    assert cluster.query("SELECT count(*) FROM users") == "5"
    assert cluster.query("SELECT record->>'quota_period' FROM users WHERE username = 'bob'") == \
        "week"
    assert cluster.query("SELECT record->>'enabled' FROM users WHERE username = 'dave'") == \
        "false"
    assert cluster.query("SELECT record->>'address' FROM upstreams WHERE id = 'us1'") == \
        "10.0.0.1"

    # A file that does not load imports nothing (test_store_agents.py imports agents).
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"users": [{"username": "zed", "password": "plain"}]}))
    r = run_ctl(["--config", str(cfg), "store", "import", "--users", str(bad)])
    assert r.rc == 1 and "zed" in r.err and "password" in r.err, r
    assert cluster.query("SELECT count(*) FROM users WHERE username = 'zed'") == "0"
    r = run_ctl(["--config", str(cfg), "store", "import", "--agents", str(bad)])
    assert r.rc == 1 and str(bad) in r.err and "agents" in r.err, r
    assert cluster.query("SELECT count(*) FROM agents") == "0"
    assert run_ctl(["store", "import"]).rc == 2  # no --config: no database named


def test_store_import_needs_the_schema(tmp_path, cluster):
    cluster.query("DROP DATABASE IF EXISTS fresh")
    cluster.query("CREATE DATABASE fresh")
    (tmp_path / "users.json").write_text(json.dumps(users_doc()))
    (tmp_path / "external_proxy.json").write_text(json.dumps(PROXIES))
    cfg = write_config(tmp_path, cluster.dsn.replace("dbname=postgres", "dbname=fresh"))
    r = run_ctl(["--config", str(cfg), "store", "import"])
    assert r.rc == 1 and "run uringproxy --migrate first" in r.err, r
