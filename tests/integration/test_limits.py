"""Issue 5 / docs/configuration.md: per-user connection caps (SOCKS5 0x02, HTTP 429) counted across
workers, per-user bandwidth caps (each direction, across all of a user's tunnels) that do not
slow other users, the global connection cap, and --check on bad limits fields."""
import json
import subprocess
import threading
import time

import pytest

from harness import base_config, merge, proxy_binary
from limits_helpers import (SinkServer, SourceServer, check_after_test, download_for,
                            echo_ok, linger0, hostport, http_connect_as, http_get_as, password,
                            proxy_fixture, socks5, start_proxy, stop_proxy, upload_for, users,
                            wait_until, watched)
from clients import HttpConn, connect, http_request, stream_end
from servers import _TcpServer
from ctl_helpers import run_ctl

pytestmark = pytest.mark.uringproxy_only

BOUND = 20.0


# ---------------------------------------------------------------------------------------------
# Connection caps: "capped" has its own max_connections: 3; "deflt" gets the default
# limits.max_connections_per_user: 2; "free" has max_connections: 1000 (an override upwards).
CAP_OWN, CAP_DEFAULT = 3, 2

_capped = proxy_fixture(
    lambda s: {"workers": 2, "limits": {"max_connections_per_user": CAP_DEFAULT}},
    lambda: users(("capped", {"max_connections": CAP_OWN}), "deflt",
                  ("free", {"max_connections": 1000})))


@pytest.fixture
def capped(_capped):
    yield from watched(_capped)


def _open_tunnels(p, servers, user, n):
    out = []
    for i in range(n):
        r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, user, password(user))
        assert r.auth_status == 0 and r.rep == 0, f"{user} tunnel {i + 1} of {n} refused: {r}"
        assert echo_ok(r.sock)
        out.append(r)
    return out


def _close(objs):
    for o in objs:
        try:
            o.close()
        except OSError:
            pass


@pytest.mark.parametrize("user,cap", [("capped", CAP_OWN), ("deflt", CAP_DEFAULT)])
def test_socks5_user_at_cap_refused_other_user_free(capped, servers, user, cap):
    p = capped
    held = _open_tunnels(p, servers, user, cap)
    extra = []
    try:
        # Several attempts over the cap: with SO_REUSEPORT they land on both workers, so a
        # per-worker count would let some through.
        for i in range(4):
            r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, user, password(user))
            extra.append(r)
            assert r.auth_status == 0, f"over-cap attempt {i}: auth must still succeed: {r}"
            assert r.rep == 0x02, f"{user} over its cap of {cap}: want reply 0x02, got {r}"
            assert stream_end(r.sock, BOUND) in ("eof", "reset")
        # Meanwhile another user connects freely, more tunnels than the capped user may hold.
        others = _open_tunnels(p, servers, "free", cap + 3)
        _close(others)
        # The held tunnels still work.
        for r in held:
            assert echo_ok(r.sock)
        # Close one: a new one is accepted again (the count drops once the proxy sees the close).
        held.pop(0).close()

        def one_more():
            r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, user, password(user))
            if r.rep == 0:
                held.append(r)
                return True
            r.close()
            return False
        assert wait_until(one_more, BOUND, interval=0.1), \
            f"{user}: after closing a tunnel, a new one is still refused"
        assert echo_ok(held[-1].sock)
        # ... and the cap holds again.
        r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, user, password(user))
        extra.append(r)
        assert r.rep == 0x02, f"{user} back at its cap: want 0x02, got {r}"
    finally:
        _close(held + extra)


def test_http_user_at_cap_429(capped, servers):
    """HTTP CONNECT and absolute-URI requests over the cap get 429; SOCKS5 and HTTP tunnels
    count together."""
    p = capped
    user = "capped"
    held = _open_tunnels(p, servers, user, CAP_OWN - 1)
    conns = []
    try:
        c, st = http_connect_as(p.http_port, "127.0.0.1", servers.echo.port, user, password(user))
        conns.append(c)
        assert st == 200, f"the {CAP_OWN}th tunnel (HTTP) is within the cap: got {st}"
        c.send(b"x" * 100)
        assert c.read_n(100) == b"x" * 100
        for _ in range(3):
            c2, st = http_connect_as(p.http_port, "127.0.0.1", servers.echo.port, user,
                                     password(user))
            conns.append(c2)
            assert st == 429, f"HTTP CONNECT over the cap: want 429, got {st}"
        hp = hostport("127.0.0.1", servers.origin.port)
        c3, st = http_get_as(p.http_port, f"http://{hp}/bytes/10?capped-429", hp, user,
                             password(user))
        conns.append(c3)
        assert st == 429, f"absolute-URI GET over the cap: want 429, got {st}"
        assert not servers.origin.find("capped-429"), "a request over the cap reached the origin"
        r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, user, password(user))
        held.append(r)
        assert r.rep == 0x02, f"SOCKS5 over the cap (HTTP tunnel counted): want 0x02, got {r}"
        # Another user over HTTP is not affected.
        c4, st = http_connect_as(p.http_port, "127.0.0.1", servers.echo.port, "free",
                                 password("free"))
        conns.append(c4)
        assert st == 200, f"another user's CONNECT: got {st}"
    finally:
        _close(held + conns)


# ---------------------------------------------------------------------------------------------
# A user's own 0 lifts the default; an absent field inherits it (issue 14 item 1).
def test_own_zero_lifts_default_absent_inherits(instances, servers):
    doc = users(("zero", {"max_connections": 0}), "deflt", ("own2", {"max_connections": 2}))
    p = start_proxy(instances, {"workers": 2, "limits": {"max_connections_per_user": 1}}, doc,
                    name="limits-zero")
    start = p.mark()
    held, extra = [], []
    try:
        # "zero": two tunnels (and a third) although the default is 1.
        held += _open_tunnels(p, servers, "zero", 3)
        # "deflt" has no field: the default of 1 holds.
        held += _open_tunnels(p, servers, "deflt", 1)
        r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, "deflt", password("deflt"))
        extra.append(r)
        assert r.rep == 0x02, f"deflt (no field, default 1): second tunnel want 0x02, got {r}"
        held += _open_tunnels(p, servers, "own2", 2)
        r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, "own2", password("own2"))
        extra.append(r)
        assert r.rep == 0x02, f"own2 (max_connections 2): third tunnel want 0x02, got {r}"

        # uringproxyctl user list shows the limits in force and where they come from.
        sock = str(p.workdir / "run" / "control.sock")
        r = run_ctl(["--socket", sock, "--json", "user", "list"])
        assert r.rc == 0, r
        by = {u["username"]: u for u in r.json()["users"]}
        assert (by["zero"]["max_connections"], by["zero"]["max_connections_from"]) == (0, "user")
        assert (by["deflt"]["max_connections"], by["deflt"]["max_connections_from"]) == \
            (1, "default")
        assert (by["own2"]["max_connections"], by["own2"]["max_connections_from"]) == (2, "user")
        assert (by["deflt"]["bandwidth_bps"], by["deflt"]["bandwidth_bps_from"]) == (0, "default")
        r = run_ctl(["--socket", sock, "user", "list"])
        assert r.rc == 0, r
        rows = {ln.split()[0]: ln for ln in r.lines()[1:]}
        assert "MAX CONN" in r.lines()[0] and "BANDWIDTH" in r.lines()[0], r
        assert "1 (default)" in rows["deflt"] and "unlimited" in rows["zero"], r
        assert "(default)" not in rows["zero"].split("unlimited")[0], r

        # An edit rewrites users.json: the explicit 0 stays 0, the absent field stays absent.
        r = run_ctl(["--socket", sock, "user", "add", "newbie", "--password-stdin"],
                    input="newbie-pw-Qz81\n")
        assert r.rc == 0, r
        written = {u["username"]: u for u in
                   json.loads((p.workdir / "users.json").read_text())["users"]}
        assert written["zero"]["max_connections"] == 0, written["zero"]
        assert "max_connections" not in written["deflt"], written["deflt"]
        assert "max_connections" not in written["newbie"], written["newbie"]
        assert written["own2"]["max_connections"] == 2
        # ... and the rule still holds on the snapshot the edit published.
        r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, "zero", password("zero"))
        held.append(r)
        assert r.rep == 0, f"zero after the edit: {r}"
    finally:
        _close(held + extra)
        check_after_test(p, start)
        stop_proxy(p)


# ---------------------------------------------------------------------------------------------
# Global connection cap
GLOBAL_CAP = 6


def test_global_max_connections(instances, servers):
    """limits.max_connections: a connection over the cap is closed at once (no reply, well
    before the handshake timeout); the tunnels already open keep working; after they close,
    new connections are served again."""
    p = start_proxy(instances, {"workers": 2,
                                "limits": {"max_connections": GLOBAL_CAP,
                                           "handshake_timeout_ms": 30000}},
                    users("u1", "u2"))
    start = p.mark()
    held, extra = [], []
    try:
        for i in range(GLOBAL_CAP):
            u = "u1" if i % 2 else "u2"
            r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, u, password(u))
            held.append(r)
            assert r.rep == 0, f"tunnel {i + 1} of {GLOBAL_CAP} (within the global cap): {r}"
        for i in range(4):
            s = connect(p.socks_port)
            extra.append(s)
            t0 = time.monotonic()
            how = stream_end(s, 10.0)
            took = time.monotonic() - t0
            assert how in ("eof", "reset"), \
                f"connection {GLOBAL_CAP + 1 + i} over the global cap not closed within 10 s"
            assert took < 5.0, f"over-cap connection closed only after {took:.1f}s (want at once)"
        # HTTP listener too.
        s = connect(p.http_port)
        extra.append(s)
        assert stream_end(s, 10.0) in ("eof", "reset"), "HTTP connection over the cap kept"
        assert p.alive()
        for r in held:
            assert echo_ok(r.sock), "an open tunnel broke when the cap was hit"
        _close(held)
        held = []

        def served():
            r = socks5(p.socks_port, "127.0.0.1", servers.echo.port, "u1", password("u1"),
                       timeout=5)
            ok = r.rep == 0 and echo_ok(r.sock)
            r.close()
            return ok
        assert wait_until(served, BOUND, interval=0.2), "not served again after the tunnels closed"
        c, st = http_connect_as(p.http_port, "127.0.0.1", servers.echo.port, "u2", password("u2"))
        c.close()
        assert st == 200, st
    finally:
        _close(held + extra)
        check_after_test(p, start)
        stop_proxy(p)


# ---------------------------------------------------------------------------------------------
# Bandwidth: 8,000,000 bps = 1,000,000 bytes/s per user, each direction.
CAP_BPS = 8_000_000
CAP_BYTES = CAP_BPS / 8
WINDOW = 5.0
LO, HI = 0.5 * CAP_BYTES, 1.6 * CAP_BYTES


@pytest.fixture
def flows():
    # Fresh sinks for every test: a closed upload tunnel still drains what the proxy buffered
    # (at the capped rate), which must not count towards the next test.
    src, sink_capped, sink_free = SourceServer(), SinkServer(), SinkServer()
    yield src, sink_capped, sink_free
    for s in (src, sink_capped, sink_free):
        s.close()


# "slow" has its own bandwidth_bps; "fast" has none (no default in this instance).
_bw_own = proxy_fixture(lambda s: {"workers": 2},
                        lambda: users(("slow", {"bandwidth_bps": CAP_BPS}), "fast"))
# Here the default caps everyone; "fast" overrides it with a rate far above the link.
_bw_default = proxy_fixture(
    lambda s: {"workers": 2, "limits": {"bandwidth_bps_per_user": CAP_BPS}},
    lambda: users("slow", ("fast", {"bandwidth_bps": 400_000_000_000})))
# The default caps everyone; "fast" lifts it with an explicit 0 (unlimited), "slow" has no field.
_bw_zero = proxy_fixture(
    lambda s: {"workers": 2, "limits": {"bandwidth_bps_per_user": CAP_BPS}},
    lambda: users("slow", ("fast", {"bandwidth_bps": 0})))


@pytest.fixture
def bw_own(_bw_own):
    yield from watched(_bw_own)


@pytest.fixture
def bw_default(_bw_default):
    yield from watched(_bw_default)


@pytest.fixture
def bw_zero(_bw_zero):
    yield from watched(_bw_zero)


def _tunnel(p, port, user, via="socks5"):
    if via == "socks5":
        r = socks5(p.socks_port, "127.0.0.1", port, user, password(user))
        assert r.rep == 0, f"{user}: {r}"
        return r.sock, b""
    c, st = http_connect_as(p.http_port, "127.0.0.1", port, user, password(user))
    assert st == 200, f"{user} CONNECT: {st}"
    return c.s, bytes(c.buf)


def _run_downloads(specs):
    """specs: list of (sock, prefix); all read concurrently for WINDOW seconds."""
    res = [None] * len(specs)

    def run(i):
        res[i] = download_for(specs[i][0], WINDOW, specs[i][1])
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(specs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WINDOW + 30)
    assert all(r is not None for r in res), "a download thread failed"
    return res


@pytest.mark.parametrize("which", ["own", "default", "zero"])
def test_bandwidth_download_capped_user_vs_free_user(request, flows, which):
    p = request.getfixturevalue("bw_" + which)
    src = flows[0]
    slow = _tunnel(p, src.port, "slow")
    fast = _tunnel(p, src.port, "fast")
    try:
        (n_slow, t_slow), (n_fast, t_fast) = _run_downloads([slow, fast])
    finally:
        slow[0].close()
        fast[0].close()
    r_slow, r_fast = n_slow / t_slow, n_fast / t_fast
    msg = f"capped {r_slow / 1e6:.2f} MB/s, uncapped {r_fast / 1e6:.2f} MB/s"
    print(msg)
    assert LO <= r_slow <= HI, f"capped user at 1 MB/s downloads at the wrong rate: {msg}"
    assert r_fast > 5 * r_slow, f"the uncapped user was slowed down: {msg}"


def test_bandwidth_cap_holds_across_tunnels_and_protocols(bw_own, flows):
    """Three tunnels of the capped user (two SOCKS5, one HTTP CONNECT; on both workers)
    share the one cap."""
    p = bw_own
    src = flows[0]
    tunnels = [_tunnel(p, src.port, "slow"), _tunnel(p, src.port, "slow"),
               _tunnel(p, src.port, "slow", via="http"), _tunnel(p, src.port, "fast")]
    try:
        res = _run_downloads(tunnels)
    finally:
        for s, _ in tunnels:
            s.close()
    total_slow = sum(n for n, _ in res[:3]) / max(t for _, t in res[:3])
    r_fast = res[3][0] / res[3][1]
    msg = (f"capped user's 3 tunnels together {total_slow / 1e6:.2f} MB/s "
           f"({', '.join(f'{n / t / 1e6:.2f}' for n, t in res[:3])}), "
           f"uncapped {r_fast / 1e6:.2f} MB/s")
    print(msg)
    assert LO <= total_slow <= HI, f"the cap is not per user across tunnels: {msg}"
    assert r_fast > 5 * total_slow, f"the uncapped user was slowed down: {msg}"


class _BodyOrigin(_TcpServer):
    """A plain-HTTP origin: GET /N answers N bytes (Content-Length); POST answers how many body
    bytes it read. Keep-alive, one request at a time."""

    def handle(self, c):
        c.settimeout(60)
        f = c.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            method, target = line.split()[:2]
            length = 0
            while (h := f.readline()) not in (b"\r\n", b""):
                k, _, v = h.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            if method == b"GET":
                body = b"\x5a" * int(target.rsplit(b"/", 1)[1])
            else:
                got = 0
                while got < length:
                    got += len(f.read(min(262144, length - got)))
                body = str(got).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def _forward(p, origin, user, method, n):
    """One forwarded request of `n` body bytes; returns (response body, seconds)."""
    url = f"http://127.0.0.1:{origin.port}/{n if method == 'GET' else 0}"
    c = HttpConn(p.http_port, timeout=60)
    try:
        t0 = time.monotonic()
        c.send(http_request(method, url, host_header=f"127.0.0.1:{origin.port}",
                            body=b"\xa5" * n if method == "POST" else None,
                            auth=(user, password(user))))
        r = c.read_response()
        took = time.monotonic() - t0
    finally:
        c.close()
    assert r.status == 200, f"{user} {method}: {r.status}"
    return r.body, took


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bandwidth_cap_holds_for_forwarded_http(bw_own, method):
    """Plain-HTTP forwarding (absolute URI) is capped like a tunnel: bodies both ways."""
    p = bw_own
    origin = _BodyOrigin()
    n = int(4 * CAP_BYTES)  # about 4 s for the capped user
    try:
        body_slow, t_slow = _forward(p, origin, "slow", method, n)
        body_fast, t_fast = _forward(p, origin, "fast", method, n)
    finally:
        origin.close()
    want = b"\x5a" * n if method == "GET" else str(n).encode()
    assert body_slow == want and body_fast == want, f"{method}: body changed on the way"
    r_slow, r_fast = n / t_slow, n / t_fast
    msg = f"{method} capped {r_slow / 1e6:.2f} MB/s, uncapped {r_fast / 1e6:.2f} MB/s"
    print(msg)
    assert LO <= r_slow <= HI, f"forwarded HTTP escapes the 1 MB/s cap: {msg}"
    assert r_fast > 5 * r_slow, f"the uncapped user was slowed down: {msg}"


@pytest.mark.parametrize("which", ["own", "default"])
def test_bandwidth_upload_capped_user_vs_free_user(request, flows, which):
    p = request.getfixturevalue("bw_own" if which == "own" else "bw_default")
    _, sink_slow, sink_fast = flows
    slow, _ = _tunnel(p, sink_slow.port, "slow")
    fast, _ = _tunnel(p, sink_fast.port, "fast", via="http")
    b_slow, b_fast = sink_slow.count(), sink_fast.count()
    t0 = time.monotonic()
    ts = [threading.Thread(target=upload_for, args=(s, WINDOW)) for s in (slow, fast)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(WINDOW + 30)
    el = time.monotonic() - t0
    r_slow = (sink_slow.count() - b_slow) / el
    r_fast = (sink_fast.count() - b_fast) / el
    for s in (slow, fast):
        linger0(s)  # reset: drop what is still buffered rather than drain it
        s.close()
    msg = f"capped {r_slow / 1e6:.2f} MB/s, uncapped {r_fast / 1e6:.2f} MB/s (at the sinks)"
    print(msg)
    assert LO <= r_slow <= HI, f"capped user at 1 MB/s uploads at the wrong rate: {msg}"
    assert r_fast > 5 * r_slow, f"the uncapped user was slowed down: {msg}"


# ---------------------------------------------------------------------------------------------
# --check
def _check(tmp_path, overrides, users_doc=None):
    (tmp_path / "users.json").write_text(json.dumps(users_doc or users("u1")))
    cfg = tmp_path / "limits-bad.json"
    cfg.write_text(json.dumps(merge(base_config(11080, 18080, 15353), overrides)))
    r = subprocess.run([proxy_binary(), "--check", "--config", str(cfg)], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def test_check_refuses_unknown_limits_field(tmp_path):
    rc, out = _check(tmp_path, {"limits": {"max_conections_per_user": 5}})
    assert rc == 1, f"exit {rc}, want 1:\n{out}"
    assert "limits-bad.json" in out, f"errors do not name the file:\n{out}"
    assert "max_conections_per_user" in out, f"errors do not name the field:\n{out}"


@pytest.mark.parametrize("field,value", [("max_connections_per_user", -1),
                                         ("bandwidth_bps_per_user", "fast"),
                                         ("max_connections", 1.5)])
def test_check_refuses_bad_limits_value(tmp_path, field, value):
    rc, out = _check(tmp_path, {"limits": {field: value}})
    assert rc == 1, f"limits.{field} = {value!r}: exit {rc}, want 1:\n{out}"
    assert "limits-bad.json" in out and field in out, out


def test_check_refuses_bad_user_limit(tmp_path):
    rc, out = _check(tmp_path, {}, users(("u1", {"max_connections": "many"})))
    assert rc == 1, f"exit {rc}, want 1:\n{out}"
    assert "users.json" in out and "max_connections" in out, out


def test_check_accepts_limits_fields(tmp_path):
    rc, out = _check(tmp_path, {"limits": {"max_connections_per_user": 10,
                                           "bandwidth_bps_per_user": 8000000,
                                           "max_connections": 5000, "auth_fail_block_after": 50,
                                           "auth_fail_window_s": 60, "auth_block_s": 300}},
                     users(("u1", {"max_connections": 3, "bandwidth_bps": 1000000,
                                   "allow": ["10.0.0.0/8"], "deny": ["*.evil.test"]})))
    assert rc == 0, out
