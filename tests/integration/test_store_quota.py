"""docs/configuration.md#quotas on a postgres store: usage is the fleet's. Two nodes on one
database add their per-user byte counts to the usage table every store.flush_interval_ms and
read the fleet's totals back; a quota spent only by the sum of both refuses the user on both
(SOCKS5 0x02, HTTP 429) and cuts a tunnel open on the node that moved nothing; `quota reset`
zeroes the fleet's usage; counts made while PostgreSQL is down are added when it is back."""
import json
import os
import time
import urllib.request

import pytest

import pg_cluster
from clients import echo_roundtrip, http_connect, socks5_open, stream_end
from ctl_helpers import run_ctl
from harness import PASSWORDS
from servers import free_port

pytestmark = [pytest.mark.uringproxy_only, pg_cluster.needs_postgres]

BOUND = 20.0  # generous: every wait ends on the event
FLUSH_MS = 250
QUOTA = 300_000  # bob's bytes per day, both directions, fleet-wide


cluster = pg_cluster.cluster_fixture(
    user_fields={"bob": {"quota_bytes": QUOTA, "quota_period": "day"}})


def node(fresh_proxy, cluster, name):
    port = free_port()
    p = fresh_proxy({"store": {"type": "postgres", "dsn": cluster.dsn, "node": name,
                               "flush_interval_ms": FLUSH_MS},
                     "control": {"socket": "ctl/control.sock"},
                     "metrics": {"listen": f"127.0.0.1:{port}"}})
    p.sock = str(p.workdir / "ctl/control.sock")
    p.metrics_port = port
    return p


def wait_until(pred):
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def ctl(p, *args):
    r = run_ctl(["--socket", p.sock] + list(args))
    assert r.rc == 0, r
    return r


def usage_of(p, user):
    (row,) = json.loads(ctl(p, "--json", "usage", user).out)["usage"]
    return row


def metric(p, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=10) as m:
        for line in m.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return line.rsplit(" ", 1)[1]
    return None


def stored_usage(cluster, user):
    return int(cluster.query(f"SELECT coalesce(sum(used_bytes), 0) FROM usage "
                             f"WHERE username = '{user}'"))


def tunnel(p, servers, user):
    r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, user=user, pw=PASSWORDS[user])
    return r


def can_open(p, servers, user):
    r = tunnel(p, servers, user)
    r.sock.close()
    return (r.auth_status, r.rep) == (0, 0)


def two_flushes(cluster, name):
    """Bytes a user moves before the first flush after their quota is set are not counted (the
    workers' counts then are the baseline): waits until node `name` has flushed twice."""
    def seq():
        return cluster.query(f"SELECT coalesce(max(seq), 0) FROM usage_flushes "
                             f"WHERE node = '{name}'")
    for _ in range(2):
        before = seq()
        assert wait_until(lambda: seq() != before)


def move(p, servers, user, n):
    """Moves about 2*n bytes as `user` through `p` (echo: each byte counts up and down)."""
    r = tunnel(p, servers, user)
    assert (r.auth_status, r.rep) == (0, 0), r
    echo_roundtrip(r.sock, os.urandom(n))
    r.sock.close()


def test_usage_adds_up_across_nodes_and_a_quota_holds_fleet_wide(fresh_proxy, servers, cluster):
    a, b = node(fresh_proxy, cluster, "edge-a"), node(fresh_proxy, cluster, "edge-b")
    # A tunnel held open on a, which moves almost nothing itself.
    held = tunnel(a, servers, "bob")
    assert (held.auth_status, held.rep) == (0, 0), held
    echo_roundtrip(held.sock, b"x" * 100)

    # 0.4 of the quota through each node: neither alone is over, both see the sum.
    part = int(QUOTA * 0.4) // 2
    move(a, servers, "bob", part)
    assert wait_until(lambda: usage_of(b, "bob")["used_bytes"] >= 2 * part), usage_of(b, "bob")
    move(b, servers, "bob", part)
    for p in (a, b):
        assert wait_until(lambda: usage_of(p, "bob")["used_bytes"] >= 4 * part), usage_of(p, "bob")
    assert stored_usage(cluster, "bob") >= 4 * part
    nodes = cluster.query("SELECT string_agg(DISTINCT node, ',' ORDER BY node) FROM usage "
                          "WHERE username = 'bob'")
    assert nodes == "edge-a,edge-b", nodes
    row = usage_of(a, "bob")
    assert (row["quota_bytes"], row["period"]) == (QUOTA, "day"), row
    assert row["resets_at"].endswith("T00:00:00Z"), row
    r = tunnel(b, servers, "bob")
    assert r.rep == 0, r  # 0.8 of the quota: still in
    r.sock.close()

    # Another 0.4 through b puts the fleet over: the tunnel held on a is cut.
    move(b, servers, "bob", part)
    assert stream_end(held.sock, BOUND) in ("eof", "reset")
    held.sock.close()
    for p in (a, b):
        assert wait_until(lambda: metric(p, "uringproxy_user_quota_remaining_bytes") == "0")
        r = tunnel(p, servers, "bob")
        assert (r.auth_status, r.rep) == (0, 0x02), r
        r.sock.close()
    c, resp = http_connect(a.http_port, "127.0.0.1", servers.echo.port, user="bob",
                           pw=PASSWORDS["bob"])
    assert (resp.status, resp.body) == (429, b"quota exceeded\n"), resp
    c.close()
    r = tunnel(a, servers, "alice")  # others are not affected
    assert r.rep == 0, r
    r.sock.close()

    # quota reset on b zeroes the fleet's usage: both nodes let bob in again.
    ctl(b, "quota", "reset", "bob")
    assert stored_usage(cluster, "bob") < QUOTA
    for p in (a, b):
        assert wait_until(lambda: usage_of(p, "bob")["used_bytes"] < QUOTA), usage_of(p, "bob")
        assert wait_until(lambda: can_open(p, servers, "bob"))


def test_quota_set_goes_to_the_store_and_counts_wait_out_an_outage(fresh_proxy, servers,
                                                                    cluster):
    a, b = node(fresh_proxy, cluster, "edge-c"), node(fresh_proxy, cluster, "edge-d")
    ctl(a, "quota", "set", "carol", "100000000", "week")
    rec = json.loads(cluster.query("SELECT record FROM users WHERE username = 'carol'"))
    assert (rec["quota_bytes"], rec["quota_period"]) == (100000000, "week"), rec
    assert wait_until(lambda: usage_of(b, "carol")["quota_bytes"] == 100000000)
    assert usage_of(b, "carol")["period"] == "week"
    two_flushes(cluster, "edge-c")

    n = 50_000
    cluster.pause()
    try:
        assert wait_until(lambda: metric(a, "uringproxy_store_up") == "0"), a.output_text()
        move(a, servers, "carol", n)  # counted here while the store is down
        assert wait_until(lambda: usage_of(a, "carol")["used_bytes"] >= 2 * n)
        r = run_ctl(["--socket", a.sock, "quota", "reset", "carol"])
        assert r.rc != 0 and "the store is down" in r.err, r
    finally:
        cluster.run()
    assert wait_until(lambda: metric(a, "uringproxy_store_up") == "1"), a.output_text()
    # Added at the first flush after the reconnect, once: b reads the fleet's total.
    assert wait_until(lambda: stored_usage(cluster, "carol") >= 2 * n)
    assert wait_until(lambda: usage_of(b, "carol")["used_bytes"] >= 2 * n), usage_of(b, "carol")
    time.sleep(4 * FLUSH_MS / 1000)
    assert stored_usage(cluster, "carol") < 4 * n  # not added twice
    ctl(a, "quota", "set", "carol", "0", "week")
    assert wait_until(lambda: usage_of(b, "carol")["quota_bytes"] == 0)


def test_a_flush_cut_off_by_lost_sessions_is_added_once(fresh_proxy, servers, cluster):
    a = node(fresh_proxy, cluster, "edge-e")
    ctl(a, "quota", "set", "erin", "100000000", "day")
    two_flushes(cluster, "edge-e")
    n = 20_000
    for _ in range(3):
        move(a, servers, "erin", n)  # 2n bytes: up and down
        # The node's flush waits on the lock, sent and unanswered, when its session is cut:
        # it is sent again after the reconnect, and added once.
        cluster.query(f"BEGIN; LOCK TABLE usage_flushes IN ACCESS EXCLUSIVE MODE; "
                      f"SELECT pg_sleep({4 * FLUSH_MS / 1000}); "
                      f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                      f"pid <> pg_backend_pid() AND backend_type = 'client backend'; COMMIT")
        assert wait_until(lambda: metric(a, "uringproxy_store_up") == "1"), a.output_text()
    assert "kept and sent again" in a.output_text(), a.output_text()
    assert wait_until(lambda: stored_usage(cluster, "erin") >= 6 * n), (
        stored_usage(cluster, "erin"), usage_of(a, "erin"),
        cluster.query("SELECT * FROM usage_flushes"), a.output_text())
    time.sleep(4 * FLUSH_MS / 1000)
    assert stored_usage(cluster, "erin") == 6 * n, a.output_text()
    assert usage_of(a, "erin")["used_bytes"] == 6 * n
    ctl(a, "quota", "set", "erin", "0", "day")
