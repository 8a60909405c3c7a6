"""docs/configuration.md#store with three nodes on one database: a user added on node A logs in on
B and C (each reads back only that user's row, not the store in full); a quota spent across the
three cuts the user on all of them; PostgreSQL stopped and started mid-run (edits refused while
it is down, counts made meanwhile added once it is back, an edit after it reaches every node); a
one-user edit on a 20,000-user store reaches the other nodes without a full read; a node stopped
with SIGTERM adds what it counted since its last flush."""
import json
import os
import threading
import time
import urllib.request

import pytest

import pg_cluster
from clients import echo_roundtrip, socks5_open, socks5_tunnel_opens, stream_end
from ctl_helpers import run_ctl
from harness import PASSWORDS, users_doc
from servers import free_port

pytestmark = [pytest.mark.uringproxy_only, pg_cluster.needs_postgres]

BOUND = 20.0  # generous: every wait ends on the event
FLUSH_MS = 250
QUOTA = 400_000  # bob's bytes per day, both directions, fleet-wide
BULK = 20_000    # users added for the large-store test


cluster = pg_cluster.cluster_fixture(
    user_fields={"bob": {"quota_bytes": QUOTA, "quota_period": "day"}})


def node(fresh_proxy, cluster, name, flush_ms=FLUSH_MS):
    port = free_port()
    p = fresh_proxy({"store": {"type": "postgres", "dsn": cluster.dsn, "node": name,
                               "flush_interval_ms": flush_ms},
                     "control": {"socket": "ctl/control.sock"},
                     "metrics": {"listen": f"127.0.0.1:{port}"}})
    p.sock = str(p.workdir / "ctl/control.sock")
    p.metrics_port = port
    return p


def three(fresh_proxy, cluster, prefix):
    return [node(fresh_proxy, cluster, f"{prefix}-{x}") for x in "abc"]


def wait_until(pred, bound=BOUND):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def ctl(p, *args, input=None):
    r = run_ctl(["--socket", p.sock] + list(args), input=input)
    assert r.rc == 0, r
    return r


def login(p, servers, user, pw):
    return socks5_tunnel_opens(p.socks_port, servers.echo.port, user, pw)


def listed(p, user):
    """None if node p has no such user, else whether they are enabled (asked over the control
    socket: polling failed logins instead would get the test's address blocked)."""
    users = json.loads(ctl(p, "--json", "user", "list").out)["users"]
    return next((u["enabled"] for u in users if u["username"] == user), None)


def metric(p, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=10) as m:
        for line in m.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return line.rsplit(" ", 1)[1]
    return None


def stored_usage(cluster, user):
    return int(cluster.query(f"SELECT coalesce(sum(used_bytes), 0) FROM usage "
                             f"WHERE username = '{user}'"))


def flushes(cluster, name):
    return int(cluster.query(f"SELECT coalesce(max(seq), 0) FROM usage_flushes "
                             f"WHERE node = '{name}'"))


def two_flushes(cluster, name):
    """Bytes moved before a node's first flush are its workers' baseline: wait for two."""
    for _ in range(2):
        before = flushes(cluster, name)
        assert wait_until(lambda: flushes(cluster, name) != before)


def move(p, servers, user, n):
    """Moves about 2*n bytes as `user` through `p` (echo: each byte counts up and down)."""
    r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, user=user, pw=PASSWORDS[user])
    assert (r.auth_status, r.rep) == (0, 0), r
    echo_roundtrip(r.sock, os.urandom(n))
    r.sock.close()


def targeted(p, user, start):
    """Node p applied another node's edit of `user` by reading that row alone."""
    return p.err.wait_for(lambda ln: f"store: user {user} " in ln and "by another node" in ln,
                          BOUND, start)


def no_full_read(p, start):
    return not any("read in full" in ln for ln in p.stderr_lines(start))


def test_a_user_added_on_a_works_on_b_and_c(fresh_proxy, servers, cluster):
    a, b, c = three(fresh_proxy, cluster, "t1")
    marks = [p.mark() for p in (a, b, c)]
    t0 = time.monotonic()
    ctl(a, "user", "add", "nina", "--password-stdin", input="nina-pw-8Kq\n")
    for p, m in zip((b, c), marks[1:]):
        # The node's log line first: polling failed logins would get the test's address blocked.
        assert targeted(p, "nina", m), p.output_text(m)
        assert wait_until(lambda: login(p, servers, "nina", "nina-pw-8Kq")), p.output_text()
        assert no_full_read(p, m), p.output_text(m)
    print(f"user add on a to a login on b and c: {time.monotonic() - t0:.3f} s")

    # Disabled on b: refused on a and c, an open tunnel on c is cut.
    t = socks5_open(c.socks_port, "127.0.0.1", servers.echo.port, user="nina", pw="nina-pw-8Kq")
    assert t.rep == 0
    ctl(b, "user", "disable", "nina")
    assert stream_end(t.sock, BOUND) in ("eof", "reset")
    t.sock.close()
    for p in (a, c):
        assert wait_until(lambda: listed(p, "nina") is False)
        assert not login(p, servers, "nina", "nina-pw-8Kq")
    # Two nodes editing the same user at once: the last commit wins and every node converges.
    edits = [threading.Thread(target=ctl, args=(c, "user", "enable", "nina")),
             threading.Thread(target=ctl, args=(a, "user", "passwd", "nina", "--password-stdin"),
                              kwargs={"input": "nina-pw-2Xw\n"})]
    for t in edits:
        t.start()
    for t in edits:
        t.join(BOUND)

    stored = cluster.query("SELECT coalesce(record->>'enabled', 'true') FROM users "
                           "WHERE username = 'nina'") == "true"
    for p in (a, b, c):
        assert wait_until(lambda: listed(p, "nina") == stored), p.output_text()
    ctl(a, "user", "del", "nina")
    for p in (a, b, c):
        assert wait_until(lambda: listed(p, "nina") is None)
        assert not login(p, servers, "nina", "nina-pw-8Kq")
        assert not login(p, servers, "nina", "nina-pw-2Xw")
    assert cluster.query("SELECT count(*) FROM users WHERE username = 'nina'") == "0"


def test_a_quota_spent_across_three_nodes_cuts_the_user_on_all(fresh_proxy, servers, cluster):
    nodes = three(fresh_proxy, cluster, "t2")
    for x in "abc":
        two_flushes(cluster, f"t2-{x}")
    held = []
    for p in nodes:
        r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, user="bob",
                        pw=PASSWORDS["bob"])
        assert (r.auth_status, r.rep) == (0, 0), r
        held.append(r)
    # A third of the quota (and a little more) through each node: only their sum is over.
    part = QUOTA // 6 + 2000
    for p in nodes[:2]:
        move(p, servers, "bob", part)
    for p in nodes:
        assert login(p, servers, "bob", PASSWORDS["bob"])  # 2/3: still in
    move(nodes[2], servers, "bob", part)
    for r in held:
        assert stream_end(r.sock, BOUND) in ("eof", "reset")
        r.sock.close()
    for p in nodes:
        assert wait_until(lambda: metric(p, "uringproxy_user_quota_remaining_bytes") == "0")
        r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, user="bob",
                        pw=PASSWORDS["bob"])
        assert (r.auth_status, r.rep) == (0, 0x02), r
        r.sock.close()
    assert stored_usage(cluster, "bob") >= QUOTA
    ctl(nodes[0], "quota", "reset", "bob")
    for p in nodes:
        assert wait_until(lambda: login(p, servers, "bob", PASSWORDS["bob"]))


def test_postgres_stopped_and_started_mid_run(fresh_proxy, servers, cluster):
    nodes = three(fresh_proxy, cluster, "t3")
    for x in "abc":
        two_flushes(cluster, f"t3-{x}")
    ctl(nodes[0], "quota", "reset", "bob")
    before = stored_usage(cluster, "bob")
    cluster.pause()
    try:
        for p in nodes:
            assert wait_until(lambda: metric(p, "uringproxy_store_up") == "0"), p.output_text()
        # Each node serves its last snapshot and counts what moves meanwhile.
        for p in nodes:
            move(p, servers, "bob", 10_000)
            assert login(p, servers, "alice", PASSWORDS["alice"])
        r = run_ctl(["--socket", nodes[1].sock, "user", "add", "omar", "--password-stdin"],
                    input="omar-pw-3Zu\n")
        assert r.rc != 0 and "the store is down" in r.err, r
    finally:
        cluster.run()
    for p in nodes:
        assert wait_until(lambda: metric(p, "uringproxy_store_up") == "1"), p.output_text()
    # Counts made while the store was down are added once each node is back.
    assert wait_until(lambda: stored_usage(cluster, "bob") >= before + 3 * 20_000)
    ctl(nodes[1], "user", "add", "omar", "--password-stdin", input="omar-pw-3Zu\n")
    for p in nodes:
        assert wait_until(lambda: login(p, servers, "omar", "omar-pw-3Zu")), p.output_text()
    ctl(nodes[2], "user", "del", "omar")
    for p in nodes:
        assert wait_until(lambda: listed(p, "omar") is None)
        assert not login(p, servers, "omar", "omar-pw-3Zu")


def test_a_one_user_edit_on_a_large_store_reaches_the_fleet(fresh_proxy, servers, cluster):
    alice = next(u for u in users_doc()["users"] if u["username"] == "alice")
    cluster.query(
        "INSERT INTO users (username, record) SELECT 'bulk' || i, jsonb_build_object("
        f"'username', 'bulk' || i, 'password', '{alice['password']}', "
        "'email', 'bulk' || i || '@fleet.test') FROM generate_series(1, "
        f"{BULK}) i")
    try:
        nodes = three(fresh_proxy, cluster, "t4")
        marks = [p.mark() for p in nodes]
        times = []
        for i in range(3):
            t0 = time.monotonic()
            edit = [p.mark() for p in nodes]
            ctl(nodes[0], "user", "passwd", f"bulk{i + 1}", "--password-stdin",
                input=f"bulk-new-{i}\n")
            for p, m in zip(nodes[1:], edit[1:]):
                # The log line first, then log in: failed logins polled would block the address.
                assert targeted(p, f"bulk{i + 1}", m), p.output_text(m)
                assert wait_until(lambda: login(p, servers, f"bulk{i + 1}", f"bulk-new-{i}"))
            times.append(time.monotonic() - t0)
        for p, m in zip(nodes[1:], marks[1:]):
            assert no_full_read(p, m), p.output_text(m)
        print(f"one-user edit, {BULK} users, a to b and c: "
              + ", ".join(f"{t:.3f}" for t in times) + " s")
    finally:
        cluster.query("DELETE FROM users WHERE username LIKE 'bulk%'")


def test_a_node_stopped_adds_what_it_counted_since_its_last_flush(fresh_proxy, servers, cluster):
    # Flushes a minute apart: the bytes below are only ever added by the flush at stop.
    p = node(fresh_proxy, cluster, "t5-a", flush_ms=60000)
    assert wait_until(lambda: flushes(cluster, "t5-a") >= 1)  # the first flush: the baseline
    ctl(p, "quota", "reset", "bob")
    before = stored_usage(cluster, "bob")
    move(p, servers, "bob", 30_000)
    assert p.stop() == 0
    assert stored_usage(cluster, "bob") >= before + 60_000, p.output_text()
    assert "last counts were added to the store" in p.output_text()


def test_a_node_killed_between_flushes_loses_at_most_its_last_counts(fresh_proxy, servers,
                                                                      cluster):
    p = node(fresh_proxy, cluster, "t6-a")
    two_flushes(cluster, "t6-a")
    ctl(p, "quota", "reset", "bob")
    before = stored_usage(cluster, "bob")
    move(p, servers, "bob", 20_000)  # flushed: counted
    assert wait_until(lambda: stored_usage(cluster, "bob") >= before + 40_000)
    move(p, servers, "bob", 30_000)  # maybe not flushed before the kill
    p.stopped_on_purpose = True
    p.kill()
    after_kill = stored_usage(cluster, "bob")
    assert before + 40_000 <= after_kill <= before + 100_000 + 2_000, after_kill
    # The same node name again: it starts from what the store holds, nothing is added twice.
    q = node(fresh_proxy, cluster, "t6-a")
    two_flushes(cluster, "t6-a")
    assert login(q, servers, "bob", PASSWORDS["bob"])
    two_flushes(cluster, "t6-a")
    assert stored_usage(cluster, "bob") == after_kill
