"""docs/configuration.md#store: `uringproxy --migrate` against a PostgreSQL cluster the test
starts itself. It creates the schema in one transaction, is idempotent, refuses a schema newer
than it knows, and names the DSN's host (never the password) when it cannot connect."""
import json
import subprocess

import pytest

import pg_cluster
from harness import proxy_binary
from servers import free_port

pytestmark = [pytest.mark.uringproxy_only,
              pytest.mark.skipif(not pg_cluster.available(),
                                 reason="needs Debian's postgresql (scripts/lib/deps.sh)")]

TABLES = "agents,groups,upstreams,uringproxy_schema,usage,users"


@pytest.fixture(scope="module")
def cluster():
    c = pg_cluster.Cluster().start()
    yield c
    c.stop()


def migrate(tmp_path, dsn, extra=None):
    cfg = tmp_path / "uringproxy.json"
    store = {"type": "postgres", "dsn": dsn, "node": "edge-1"}
    store.update(extra or {})
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1"}],
        "users_file": "users.json", "store": store}))
    r = subprocess.run([proxy_binary(), "--config", str(cfg), "--migrate"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).decode()


def test_migrate_creates_the_schema_once(tmp_path, cluster):
    rc, out = migrate(tmp_path, cluster.dsn)
    assert rc == 0 and "schema migrated from version 0 to 1" in out, out
    tables = cluster.query("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                           "WHERE schemaname = 'public'")
    assert tables == TABLES
    assert cluster.query("SELECT version FROM uringproxy_schema") == "1"
    rc, out = migrate(tmp_path, cluster.dsn)
    assert rc == 0 and "already at version 1" in out, out
    assert cluster.query("SELECT count(*) FROM uringproxy_schema") == "1"


def test_migrate_refuses_a_newer_schema(tmp_path, cluster):
    assert migrate(tmp_path, cluster.dsn)[0] == 0
    cluster.query("UPDATE uringproxy_schema SET version = 99")
    try:
        rc, out = migrate(tmp_path, cluster.dsn)
        assert rc == 1, out
        assert "the schema is at version 99, newer than this uringproxy knows (1)" in out, out
        assert cluster.query("SELECT version FROM uringproxy_schema") == "99"  # untouched
    finally:
        cluster.query("UPDATE uringproxy_schema SET version = 1")


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
