"""docs/configuration.md#quotas: per-user byte quotas on the JSON store. A user over quota is
refused new tunnels (SOCKS5 0x02, HTTP 429 "quota exceeded") and their open tunnels are cut;
`uringproxyctl usage` / `quota set` / `quota reset`; usage survives a restart (usage.json);
bad quota fields are refused by --check naming the user and the field."""
import json
import os
import subprocess
import urllib.request

import pytest

from clients import curl, echo_roundtrip, http_connect, socks5_open, stream_end
from ctl_helpers import CtlDaemon, wait_control, wait_for
from harness import PASSWORDS, proxy_binary, users_doc
from servers import free_port

pytestmark = pytest.mark.uringproxy_only

BOUND = 20.0
FLUSH_MS = 250
QUOTA = 200_000  # bytes per day, both directions


def quota_users():
    doc = users_doc()
    for u in doc["users"]:
        if u["username"] == "bob":
            u["quota_bytes"] = QUOTA
            u["quota_period"] = "day"
    return doc


@pytest.fixture
def daemon(fresh_proxy):
    metrics_port = free_port()
    p = fresh_proxy({"control": {"socket": "run/control.sock"},
                     "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
                     "store": {"flush_interval_ms": FLUSH_MS}}, quota_users())
    p.metrics_port = metrics_port
    d = CtlDaemon(p, p.workdir / "run" / "control.sock")
    wait_control(d)
    return d


def usage_of(d, user):
    r, a = d.ctl_json("usage", user)
    assert r.rc == 0, r
    (row,) = a["usage"]
    return row


def remaining_metric(d):
    url = f"http://127.0.0.1:{d.p.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as m:
        text = m.read().decode()
    return [ln for ln in text.splitlines()
            if ln.startswith("uringproxy_user_quota_remaining_bytes{")]


def spend(d, servers, user, at_least):
    """Moves bytes as `user` through SOCKS5 (echo: each byte counts up and down) until the
    daemon reports `at_least` used; returns the still-open tunnel."""
    r = socks5_open(d.p.socks_port, "127.0.0.1", servers.echo.port, user=user,
                    pw=PASSWORDS[user])
    assert (r.auth_status, r.rep) == (0, 0), r
    echo_roundtrip(r.sock, os.urandom(at_least // 2 + 1))
    assert wait_for(lambda: usage_of(d, user)["used_bytes"] >= at_least, BOUND), \
        usage_of(d, user)
    return r.sock


def test_over_quota_refused_everywhere_and_open_tunnel_cut(daemon, servers):
    d = daemon
    # Under quota: curl through both listeners works and is counted.
    url = f"http://127.0.0.1:{servers.origin.port}/bytes/20000"
    got = curl(["--socks5", f"127.0.0.1:{d.p.socks_port}", "-U", f"bob:{PASSWORDS['bob']}",
                "-o", "/dev/null", "-w", "%{http_code}", url])
    assert got.stdout == b"200", got
    assert wait_for(lambda: usage_of(d, "bob")["used_bytes"] >= 20000, BOUND)
    # Only bob has a quota; the gauge is what he has left (read until a flush is not between).
    assert wait_for(lambda: remaining_metric(d) == [
        f'uringproxy_user_quota_remaining_bytes{{user="bob"}} '
        f'{QUOTA - usage_of(d, "bob")["used_bytes"]}'], BOUND), remaining_metric(d)
    start = d.p.mark()
    held = spend(d, servers, "bob", QUOTA)
    # The open tunnel is closed within two flush intervals of the flush that saw it over.
    assert stream_end(held, BOUND) in ("eof", "reset")
    assert remaining_metric(d) == ['uringproxy_user_quota_remaining_bytes{user="bob"} 0']
    line = d.p.wait_access_log(lambda o: o.get("user") == "bob" and
                               o.get("result") == "over_quota", start=start)
    assert line is not None, "no over_quota access-log line for the cut tunnel"
    # New tunnels: SOCKS5 reply 0x02 after a successful login; HTTP 429 "quota exceeded".
    r = socks5_open(d.p.socks_port, "127.0.0.1", servers.echo.port, user="bob",
                    pw=PASSWORDS["bob"])
    assert (r.auth_status, r.rep) == (0, 0x02), r
    r.sock.close()
    c, resp = http_connect(d.p.http_port, "127.0.0.1", servers.echo.port, user="bob",
                           pw=PASSWORDS["bob"])
    assert resp.status == 429, resp
    assert resp.body == b"quota exceeded\n", resp
    c.close()
    got = curl(["-x", f"http://127.0.0.1:{d.p.http_port}", "-U", f"bob:{PASSWORDS['bob']}",
                "-w", "%{http_code}", url])
    assert got.stdout == b"quota exceeded\n429", got
    # Other users are not affected.
    r = socks5_open(d.p.socks_port, "127.0.0.1", servers.echo.port, user="alice",
                    pw=PASSWORDS["alice"])
    assert r.rep == 0, r
    r.sock.close()


def test_quota_commands(daemon, servers):
    d = daemon
    r = d.ctl("usage")
    assert r.rc == 0, r
    assert r.lines()[0].split() == ["USER", "USED_BYTES", "QUOTA_BYTES", "PERIOD", "RESETS_AT"]
    assert r.lines()[1].split()[0] == "bob" and r.lines()[1].split()[2:4] == [str(QUOTA), "day"]
    assert len(r.lines()) == 2, r  # only users with a quota
    row = usage_of(d, "alice")
    assert row == {"user": "alice", "used_bytes": 0, "quota_bytes": 0, "period": None,
                   "resets_at": None}
    assert d.ctl("usage", "nobody").rc == 1

    held = spend(d, servers, "bob", QUOTA)
    assert stream_end(held, BOUND) in ("eof", "reset")
    row = usage_of(d, "bob")
    assert row["resets_at"].endswith("T00:00:00Z") and row["period"] == "day", row

    # A bigger quota lets bob in at once; it is written to users.json.
    r = d.ctl("quota", "set", "bob", "100000000", "month")
    assert r.rc == 0 and r.out.strip() == "✓ Quota of bob: 100000000 bytes per month (UTC)", r
    bob = next(u for u in json.loads(d.users_path.read_text())["users"]
               if u["username"] == "bob")
    assert (bob["quota_bytes"], bob["quota_period"]) == (100000000, "month")
    row = usage_of(d, "bob")
    assert (row["quota_bytes"], row["period"]) == (100000000, "month")
    assert row["resets_at"][8:] == "01T00:00:00Z", row
    s = socks5_open(d.p.socks_port, "127.0.0.1", servers.echo.port, user="bob",
                    pw=PASSWORDS["bob"])
    assert s.rep == 0, s
    s.sock.close()

    # A quota below what is used refuses bob; reset counts from zero and lets him in again.
    assert d.ctl("quota", "set", "bob", "1000", "month").rc == 0
    held = spend(d, servers, "bob", 1000)
    assert stream_end(held, BOUND) in ("eof", "reset")
    s = socks5_open(d.p.socks_port, "127.0.0.1", servers.echo.port, user="bob",
                    pw=PASSWORDS["bob"])
    assert s.rep == 0x02, s
    s.sock.close()
    r = d.ctl("quota", "reset", "bob")
    assert r.rc == 0 and r.out.strip() == "✓ Usage of bob this period reset to 0 bytes", r
    assert usage_of(d, "bob")["used_bytes"] == 0
    s = socks5_open(d.p.socks_port, "127.0.0.1", servers.echo.port, user="bob",
                    pw=PASSWORDS["bob"])
    assert s.rep == 0, s
    s.sock.close()

    # 0 removes the quota; bad arguments are refused before the daemon sees them.
    r = d.ctl("quota", "set", "bob", "0", "day")
    assert r.rc == 0 and r.out.strip() == "✓ User bob has no quota", r
    assert "quota_bytes" not in next(u for u in json.loads(d.users_path.read_text())["users"]
                                     if u["username"] == "bob")
    assert d.ctl("quota", "set", "bob", "10", "year").rc == 2
    assert d.ctl("quota", "set", "nobody", "10", "day").rc == 1
    assert d.ctl("quota", "reset", "nobody").rc == 1


def test_usage_survives_restart(daemon, servers):
    d = daemon
    held = spend(d, servers, "bob", 50_000)
    held.close()
    used = usage_of(d, "bob")["used_bytes"]
    usage_file = d.workdir / "usage.json"
    assert oct(usage_file.stat().st_mode & 0o777) == "0o600"
    assert d.p.stop() == 0
    saved = json.loads(usage_file.read_text())["usage"]
    assert [(u["user"], u["period"]) for u in saved] == [("bob", "day")], saved
    assert saved[0]["used_bytes"] >= used
    d.p.start()
    d.p.stopped_on_purpose = False  # the fixture stops it again and checks its exit
    wait_control(d)
    assert usage_of(d, "bob")["used_bytes"] == saved[0]["used_bytes"]
    # Counting goes on from there.
    held = spend(d, servers, "bob", saved[0]["used_bytes"] + 10_000)
    held.close()


@pytest.mark.parametrize("fields,message", [
    ({"quota_bytes": 1000, "quota_period": "year"},
     'user "bob" (users[1]).quota_period: "year" is not a quota period'),
    ({"quota_bytes": 1000}, 'user "bob" (users[1]).quota_period: is required with quota_bytes'),
    ({"quota_bytes": -5, "quota_period": "day"}, 'user "bob" (users[1]).quota_bytes'),
])
def test_check_rejects_bad_quota_fields(tmp_path, fields, message):
    doc = users_doc()
    doc["users"][1].update(fields)
    (tmp_path / "users.json").write_text(json.dumps(doc))
    cfg = tmp_path / "uringproxy.json"
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1"}],
        "users_file": "users.json"}))
    r = subprocess.run([proxy_binary(), "--check", "--config", str(cfg)], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert message in err, err
