"""docs/configuration.md#store: nodes serving from PostgreSQL. Two daemons on one database
read it at start-up, LISTEN, and apply a commit made elsewhere (here with psql, followed by
NOTIFY) within seconds: a new user logs in on both, a deleted user is refused and their open
tunnel is cut. Start-up with the database unreachable fails naming the DSN's host, never its
password."""
import json
import subprocess
import time

import pytest

import pg_cluster
from clients import socks5_open, socks5_tunnel_opens
from ctl_helpers import run_ctl
from harness import PASSWORDS, proxy_binary, users_doc
from servers import free_port

pytestmark = [pytest.mark.uringproxy_only, pg_cluster.needs_postgres]

BOUND = 20.0  # generous: every wait ends on the event


cluster = pg_cluster.cluster_fixture()


def put_user(c, record, notify=True):
    sql = (f"INSERT INTO users (username, record) VALUES ('{record['username']}', "
           f"'{json.dumps(record)}'::jsonb) ON CONFLICT (username) DO UPDATE SET "
           f"record = excluded.record;")
    if notify:
        sql += "NOTIFY uringproxy_changes, 'test';"
    c.query("BEGIN;" + sql + "COMMIT")


def node(fresh_proxy, c, name):
    return fresh_proxy({"store": {"type": "postgres", "dsn": c.dsn, "node": name}})


def login(p, servers, user, pw):
    return socks5_tunnel_opens(p.socks_port, servers.echo.port, user, pw)


def wait_until(pred):
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_a_commit_reaches_every_node(fresh_proxy, servers, cluster):
    a, b = node(fresh_proxy, cluster, "edge-a"), node(fresh_proxy, cluster, "edge-b")
    for p in (a, b):
        assert login(p, servers, "alice", PASSWORDS["alice"])
        assert not login(p, servers, "dave", PASSWORDS["dave"])  # disabled in the store
    zed = dict(users_doc()["users"][0], username="zed")  # alice's hash
    put_user(cluster, zed)
    for p in (a, b):
        assert wait_until(lambda: login(p, servers, "zed", PASSWORDS["alice"])), p.output_text()

    # zed's open tunnel on b is cut when zed is deleted in the store; a new login is refused.
    t = socks5_open(b.socks_port, "127.0.0.1", servers.echo.port, user="zed",
                    pw=PASSWORDS["alice"])
    assert t.rep == 0
    cluster.query("BEGIN; DELETE FROM users WHERE username = 'zed';"
                  "NOTIFY uringproxy_changes, 'test'; COMMIT")
    t.sock.settimeout(BOUND)
    assert t.sock.recv(1) == b""  # closed by the node
    t.sock.close()
    for p in (a, b):
        assert wait_until(lambda: not login(p, servers, "zed", PASSWORDS["alice"]))
        assert login(p, servers, "alice", PASSWORDS["alice"])


def test_start_up_with_the_database_unreachable_names_the_host(tmp_path):
    cfg = tmp_path / "uringproxy.json"
    port = free_port()  # nothing listens there
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": f"127.0.0.1:{free_port()}"}],
        "auth": "required", "metrics": {"listen": ""},
        "control": {"socket": str(tmp_path / "ctl.sock")},
        "store": {"type": "postgres", "node": "edge-1",
                  "dsn": f"host=127.0.0.1 port={port} dbname=x user=u password=s3cretpw"}}))
    r = subprocess.run([proxy_binary(), "--config", str(cfg)], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, out
    assert "store.dsn (host 127.0.0.1): cannot connect" in out, out
    assert "s3cretpw" not in out, out


def store_up(p):
    import urllib.request
    body = urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=10)
    for line in body.read().decode().splitlines():
        if line.startswith("uringproxy_store_up "):
            return line.split()[1]
    return None


def ctl_node(fresh_proxy, cluster, name, metrics=False):
    over = {"store": {"type": "postgres", "dsn": cluster.dsn, "node": name},
            "control": {"socket": "ctl/control.sock"}}
    if metrics:
        port = free_port()
        over["metrics"] = {"listen": f"127.0.0.1:{port}"}
    p = fresh_proxy(over)
    p.sock = str(p.workdir / "ctl/control.sock")
    if metrics:
        p.metrics_port = port
    return p


def test_a_ctl_edit_on_one_node_routes_on_the_other(fresh_proxy, servers, cluster):
    a, b = ctl_node(fresh_proxy, cluster, "edge-e"), ctl_node(fresh_proxy, cluster, "edge-f")
    r = run_ctl(["--socket", a.sock, "--json", "status"])
    st = json.loads(r.out)
    assert st["store"] == "postgres" and st["store_up"] is True and st["node"] == "edge-e", st

    r = run_ctl(["--socket", a.sock, "user", "add", "xavi", "--password-stdin"],
                input="xavi-pw-4Rt\n")
    assert r.rc == 0, r
    assert cluster.query("SELECT count(*) FROM users WHERE username = 'xavi'") == "1"
    for p in (a, b):
        assert wait_until(lambda: login(p, servers, "xavi", "xavi-pw-4Rt")), p.output_text()

    # Deleted on a: refused on b, and the tunnel open on b is cut.
    t = socks5_open(b.socks_port, "127.0.0.1", servers.echo.port, user="xavi", pw="xavi-pw-4Rt")
    assert t.rep == 0
    r = run_ctl(["--socket", a.sock, "user", "del", "xavi"])
    assert r.rc == 0, r
    t.sock.settimeout(BOUND)
    assert t.sock.recv(1) == b""
    t.sock.close()
    assert wait_until(lambda: not login(b, servers, "xavi", "xavi-pw-4Rt"))
    assert cluster.query("SELECT count(*) FROM users WHERE username = 'xavi'") == "0"


def test_a_proxy_edit_reaches_the_other_node(fresh_proxy, cluster):
    a, b = ctl_node(fresh_proxy, cluster, "edge-g"), ctl_node(fresh_proxy, cluster, "edge-h")
    r = run_ctl(["--socket", a.sock, "proxy", "add", "--id", "far1", "--type", "socks5",
                 "--address", "127.0.0.1", "--port", str(free_port()), "--no-test"])
    assert r.rc == 0, r

    def ids(p):
        r = run_ctl(["--socket", p.sock, "--json", "proxy", "list"])
        return [x["id"] for x in json.loads(r.out)["proxies"]]
    assert wait_until(lambda: "far1" in ids(b))
    r = run_ctl(["--socket", b.sock, "proxy", "del", "far1"])
    assert r.rc == 0, r
    assert wait_until(lambda: "far1" not in ids(a))
    assert cluster.query("SELECT count(*) FROM upstreams") == "0"


def test_an_outage_keeps_the_snapshot_and_a_reconnect_resyncs(fresh_proxy, servers, cluster):
    nodes = [ctl_node(fresh_proxy, cluster, n, metrics=True) for n in ("edge-c", "edge-d")]
    for p in nodes:
        assert store_up(p) == "1"
    cluster.pause()
    try:
        for p in nodes:
            assert wait_until(lambda: store_up(p) == "0"), p.output_text()
            assert login(p, servers, "alice", PASSWORDS["alice"])  # the last snapshot serves
            assert p.err.wait_for(lambda ln: "serving the last snapshot" in ln, BOUND)
            r = run_ctl(["--socket", p.sock, "user", "disable", "alice"])
            assert r.rc != 0 and "the store is down" in r.err, r
    finally:
        cluster.run()
    for p in nodes:
        assert wait_until(lambda: store_up(p) == "1"), p.output_text()
    # A commit the nodes never hear of (their sessions are cut first, and no NOTIFY is sent)
    # is picked up by the full read on reconnect.
    yan = dict(users_doc()["users"][0], username="yan")
    # One transaction: the sessions are cut before its commit, and a node waits out its first
    # backoff (250 ms) before it reconnects.
    cluster.query(f"BEGIN; INSERT INTO users (username, record) VALUES ('yan', "
                  f"'{json.dumps(yan)}'::jsonb); SELECT count(pg_terminate_backend(pid)) FROM "
                  f"pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                  f"backend_type = 'client backend'; COMMIT")
    for p in nodes:
        assert wait_until(lambda: login(p, servers, "yan", PASSWORDS["alice"])), p.output_text()


def test_a_row_that_does_not_load_is_skipped_and_named(fresh_proxy, servers, cluster):
    """One bad row (edited by hand, or written by a newer node) must not stop a node or freeze
    the fleet: it is skipped and named by its key, and the other rows apply, at start-up and in
    a full read."""
    alice = users_doc()["users"][0]
    put_user(cluster, {"username": "broken", "password": "not-a-hash"}, notify=False)
    try:
        p = node(fresh_proxy, cluster, "edge-bad")
        assert login(p, servers, "alice", PASSWORDS["alice"])
        assert p.err.wait_for(lambda ln: 'user "broken"' in ln and "password" in ln
                              and "this row is skipped" in ln, BOUND), p.output_text()
        m = p.mark()
        # A user routed to an upstream the store does not have is skipped too; a good row
        # committed with it applies (the NOTIFY names nothing: a full read).
        put_user(cluster, dict(alice, username="routed", external_proxy_id="nowhere"),
                 notify=False)
        put_user(cluster, dict(alice, username="zed"))
        assert wait_until(lambda: login(p, servers, "zed", PASSWORDS["alice"])), p.output_text()
        assert p.err.wait_for(lambda ln: '"routed"' in ln and "nowhere" in ln
                              and "this row is skipped" in ln, BOUND, m), p.output_text(m)
        assert not login(p, servers, "routed", PASSWORDS["alice"])
        assert not login(p, servers, "broken", "not-a-hash")
    finally:
        cluster.query("DELETE FROM users WHERE username IN ('broken', 'routed', 'zed')")


def test_a_login_the_server_refuses_stops_start_up_naming_the_host(tmp_path, cluster):
    cfg = tmp_path / "uringproxy.json"
    dsn = (f"host={cluster.dir} port={cluster.port} dbname=postgres user=nosuchrole "
           f"password=s3cretpw")
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": f"127.0.0.1:{free_port()}"}],
        "auth": "required", "metrics": {"listen": ""},
        "control": {"socket": str(tmp_path / "ctl.sock")},
        "store": {"type": "postgres", "node": "edge-1", "dsn": dsn}}))
    r = subprocess.run([proxy_binary(), "--config", str(cfg)], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, out
    assert f"store.dsn (host {cluster.dir})" in out and "nosuchrole" in out, out
    assert "s3cretpw" not in out, out
