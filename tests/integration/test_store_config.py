"""docs/configuration.md#store: the store block as --check sees it. A DSN that does not parse
is named by its field and never printed (it may hold a password); the PostgreSQL store is
accepted by --check without reading the database (the daemon reads it at start-up)."""
import json
import subprocess

import pytest

from harness import proxy_binary, users_doc

pytestmark = pytest.mark.uringproxy_only


def check(tmp_path, store):
    (tmp_path / "users.json").write_text(json.dumps(users_doc()))
    cfg = tmp_path / "uringproxy.json"
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1"}],
        "users_file": "users.json", "store": store}))
    r = subprocess.run([proxy_binary(), "--check", "--config", str(cfg)], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).decode()


def test_json_store_passes_check(tmp_path):
    rc, out = check(tmp_path, {"type": "json", "flush_interval_ms": 500})
    assert rc == 0, out


def test_bad_dsn_named_without_its_password(tmp_path):
    rc, out = check(tmp_path, {"type": "postgres", "node": "edge-1",
                               "dsn": "host=db password='s3cretpw dbname=x"})
    assert rc == 1, out
    assert "store.dsn: does not parse as a libpq connection string" in out, out
    assert "s3cretpw" not in out, out


def test_postgres_store_passes_check_without_reading_the_database(tmp_path):
    rc, out = check(tmp_path, {"type": "postgres", "node": "edge-1",
                               "dsn": "host=db.internal dbname=uringproxy password=s3cretpw"})
    assert rc == 0, out
    assert "s3cretpw" not in out, out
