"""Upstream failures (docs/configuration.md#external_proxyjson, 2.4 failure rules, 2.5; issue 3 "Bad input and faults"):
refused, disabled, garbage, silent, SOCKS and HTTP errors, bad credentials, kill -9 mid-stream.
Every refusal carries the right code (SOCKS5 0x01-0x06, HTTP 502/504), and the target never sees
a direct connection unless `on_failure: direct` says so. Sentinel targets (fresh per test) prove
that nothing arrived at all."""
import threading
import time

import sys

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U
from clients import TIMEOUT, socks5_open, stream_end
from servers import closed_port, wait_until
from upstream_conftest import pw, socks, up_config, user

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only

# attempts 2 x connect_timeout 2 s + backoff: anything slower than this is a hang.
FAIL_BOUND = 15.0


@pytest.fixture
def sentinel():
    t = U.AddrTarget("sentinel")
    yield t
    t.close()


def all_modes(proxy, name, target, base=None):
    out = {}
    for m, f in U.TRIES.items():
        t0 = time.monotonic()
        out[m] = f(proxy, name, pw(base or name), "127.0.0.1", target.port)
        out[m + "_s"] = round(time.monotonic() - t0, 2)
    return out


def assert_refused(got, socks_reps, http_codes=(502,), bound=FAIL_BOUND):
    s = got["socks"]
    assert s[0] == "rep" and s[1] in socks_reps, \
        f"SOCKS5 client got {s}, want a reply in {[hex(r) for r in socks_reps]}: {got}"
    for m in ("connect", "forward"):
        assert got[m][0] == "status" and got[m][1] in http_codes, \
            f"HTTP {m} client got {got[m]}, want {http_codes}: {got}"
    for m in U.TRIES:
        assert got[m + "_s"] < bound, f"{m} took {got[m + '_s']} s: {got}"


FAIL_RANGE = (1, 2, 3, 4, 5, 6)


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fdead", "fdeadhttp"])
def test_upstream_refusing_connections_fails_closed(uproxy, sentinel, name):
    """Upstream on a closed port, on_failure reject: refused after the attempts, never direct."""
    got = all_modes(uproxy, name, sentinel)
    assert_refused(got, FAIL_RANGE)
    assert sentinel.peers() == [], f"the target saw {sentinel.peers()}: {got}"


def test_on_failure_direct_leaves_directly(uproxy, sentinel):
    got = all_modes(uproxy, "fdeaddirect", sentinel)
    for m in U.TRIES:
        assert got[m] == ("ok", U.DIRECT), got
    assert set(sentinel.peers()) == {U.DIRECT}


def test_on_failure_direct_is_logged_as_a_warning(uproxy, sentinel):
    start = uproxy.mark()
    st = U.socks_try(uproxy, "fdeaddirect", pw("fdeaddirect"), "127.0.0.1", sentinel.port)
    assert st == ("ok", U.DIRECT), st

    def warned(ln):
        low = ln.lower()
        return "warn" in low and "direct" in low and ("dead-direct" in ln or "fdeaddirect" in ln)
    assert wait_until(lambda: any(warned(ln) for ln in uproxy.stderr_lines(start)), 10), \
        "no warning naming dead-direct (or the user) and direct:\n" + \
        "\n".join(uproxy.stderr_lines(start)[-20:])


def test_on_failure_other_upstream(uproxy, sentinel):
    """dead-other fails over to proxy-http (tinyproxy, 127.0.0.3)."""
    got = all_modes(uproxy, "fdeadother", sentinel)
    for m in U.TRIES:
        assert got[m] == ("ok", U.TINYPROXY_EXIT), got
    assert set(sentinel.peers()) == {U.TINYPROXY_EXIT}


def test_disabled_upstream_is_unavailable(uproxy, sentinel):
    got = all_modes(uproxy, "fdisabled", sentinel)
    assert_refused(got, FAIL_RANGE)
    assert sentinel.peers() == [], got


# ---------------------------------------------------------------------------------------------
def test_socks_upstream_target_refused(uproxy, ustack):
    """dante answers 0x05 for a refused target: passed on (or 0x01); HTTP clients get 502.
    (Through stunnel, dante's reset after the 0x05 loses the reply: the proxy sees a close
    during the handshake, so alice may get 0x01 and proxy-us is marked down for a probe
    interval; wait for it to come back so later tests start from a healthy upstream.)"""
    port = closed_port()
    for name in ("dan", "alice"):  # socks5 and socks5s
        s = U.socks_try(uproxy, name, pw(name), "127.0.0.1", port)
        assert s in (("rep", 0x05), ("rep", 0x01)), f"{name}: {s}"
        for m in ("connect", "forward"):
            r = U.TRIES[m](uproxy, name, pw(name), "127.0.0.1", port)
            assert r == ("status", 502), f"{name} via {m}: {r}"
    assert wait_until(lambda: U.socks_try(uproxy, "alice", pw("alice"), "127.0.0.1",
                                          ustack.target.port)[0] == "ok", 15, 0.5)


@pytest.mark.parametrize("name", ["frefuse", "frefusetls"])
def test_socks_upstream_refusal_passed_through_and_upstream_stays_up(uproxy, ustack, name):
    """An upstream that cleanly answers 0x05 (socks5 and socks5s): the client gets 0x05 (or
    0x01), HTTP clients 502, and every attempt reaches the upstream - a target refusal does
    not mark the upstream down (which would refuse everyone's connections through it)."""
    port = closed_port()
    n = len(ustack.refuser.log)
    got = []
    for m in ("socks", "connect", "forward", "socks", "socks"):
        got.append((m, U.TRIES[m](uproxy, name, pw(name), "127.0.0.1", port)))
    for m, r in got:
        want = (("rep", 0x05), ("rep", 0x01)) if m == "socks" else (("status", 502),)
        assert r in want, f"{name} via {m}: {r}: {got}"
    reached = len(ustack.refuser.log) - n
    assert reached == len(got), \
        f"only {reached} of {len(got)} attempts reached the upstream (marked down?): {got}"
    socks_codes = {r for m, r in got if m == "socks"}
    assert socks_codes == {("rep", 0x05)}, f"the upstream's 0x05 was not passed on: {got}"


@pytest.mark.parametrize("name,exit_ip", [("dan", U.DANTE_A_EXIT), ("erin", U.TINYPROXY_EXIT),
                                          ("bob", U.TINYPROXY_EXIT)])
def test_target_refusal_does_not_mark_the_upstream_down(uproxy, ustack, name, exit_ip):
    """The upstream answered properly (the target refused): it is healthy, so the very next
    connection through it works, and the refusal reply code is the upstream's, not 0x01."""
    port = closed_port()
    # Start from a healthy upstream (an earlier test may have had it marked down).
    assert wait_until(lambda: U.socks_try(uproxy, name, pw(name), "127.0.0.1",
                                          ustack.target.port) == ("ok", exit_ip), 15, 0.5)
    for m in ("socks", "connect", "forward"):
        r = U.TRIES[m](uproxy, name, pw(name), "127.0.0.1", port)
        assert r[0] in ("rep", "status"), f"{name} via {m} to a closed port: {r}"
        ok = U.TRIES[m](uproxy, name, pw(name), "127.0.0.1", ustack.target.port)
        assert ok == ("ok", exit_ip), \
            f"{name} via {m}: right after a refused target, a good one got {ok}"


@pytest.mark.parametrize("name,route", [("dan", "proxy-socks"), ("erin", "proxy-http")])
def test_access_log_route_when_the_upstream_reports_a_refusal(uproxy, ustack, name, route):
    """The tunnel went through the upstream, which reported the target's refusal: the access
    log names that upstream, never "direct" (an audit must not show an exposure that did not
    happen, nor hide one)."""
    port = closed_port()
    assert wait_until(lambda: U.socks_try(uproxy, name, pw(name), "127.0.0.1",
                                          ustack.target.port)[0] == "ok", 15, 0.5)
    start = uproxy.mark()
    r = U.socks_try(uproxy, name, pw(name), "127.0.0.1", port)
    assert r[0] == "rep", r
    rec = uproxy.wait_access_log(lambda o: o.get("target") == f"127.0.0.1:{port}", 20, start)
    assert rec is not None, "no access-log line"
    assert rec.get("route") == route, f"route {rec.get('route')!r}, want {route!r}: {rec}"


def test_http_upstream_target_refused(uproxy):
    """tinyproxy answers `500 Unable to connect`: HTTP clients get 502, SOCKS5 clients a
    failure reply (0x05 or 0x01)."""
    port = closed_port()
    for name in ("erin", "bob"):  # http and https
        s = U.socks_try(uproxy, name, pw(name), "127.0.0.1", port)
        assert s[0] == "rep" and s[1] in FAIL_RANGE, f"{name}: {s}"
        for m in ("connect", "forward"):
            r = U.TRIES[m](uproxy, name, pw(name), "127.0.0.1", port)
            assert r == ("status", 502), f"{name} via {m}: {r}"


@pytest.mark.parametrize("name", ["f403", "f502"])
def test_http_upstream_error_status(uproxy, sentinel, name):
    got = all_modes(uproxy, name, sentinel)
    assert_refused(got, FAIL_RANGE)
    assert sentinel.peers() == [], got


@pytest.mark.parametrize("name", ["fsocksbadauth", "fhttpbadauth"])
def test_upstream_rejects_our_credentials(uproxy, sentinel, name):
    """dante answers RFC 1929 status 1; tinyproxy answers 401: 0x01 / 502."""
    got = all_modes(uproxy, name, sentinel)
    assert_refused(got, (0x01,))
    assert sentinel.peers() == [], got


@pytest.mark.parametrize("name", ["fgarbage", "fgarbagehttp"])
def test_upstream_sending_garbage(uproxy, sentinel, name):
    got = all_modes(uproxy, name, sentinel)
    assert_refused(got, (0x01,), bound=10.0)
    assert sentinel.peers() == [], got


STALLED = {
    # user: (proxy type, where it stalls)
    "fsilent": ("socks5", "silent"),             # accepts TCP, never a byte
    "fsilenthttp": ("http", "silent"),
    "fstallauth": ("socks5", "stall_auth"),      # answers the greeting, not the credentials
    "fstallconnect": ("socks5", "stall_connect"),  # accepts the credentials, not the CONNECT
    "fsilenttls": ("socks5s", "st_silent"),      # TLS handshake fine, then silence
    "fsilenthttps": ("https", "st_silent"),
}


def test_stalled_upstreams_time_out(up_factory, ustack, sentinel):
    """An upstream that accepts TCP and then stops answering, at each stage of the handshake:
    SOCKS5 0x06 / HTTP 504, after connect_timeout_ms per attempt, and never direct. Measured on
    the first connections after start, all at once, before a health check could mark the
    upstreams down (a long probe interval)."""
    tls = {"server_name": U.TLS_NAME, "verify": True, "ca_file": str(ustack.pki.ca)}
    proxies, users = [], []
    for name, (typ, srv) in STALLED.items():
        p = dict(socks(f"up-{name}", getattr(ustack, srv).port, creds=True), type=typ)
        if typ in ("http", "https"):
            p["username"], p["password"] = U.HTTP_USER, U.HTTP_PASSWORD
        if typ in ("socks5s", "https"):
            p["tls"] = tls
        proxies.append(p)
        users.append(user(name, f"up-{name}"))
    cfg = up_config(ustack, health_check={"interval_ms": 600000, "timeout_ms": 1500},
                    upstream={"connect_timeout_ms": 1000, "attempts": 2, "backoff_ms": 200})
    p = up_factory("up-stalled", cfg, {"users": users}, proxies)
    res = {}

    def run(key, mode, name):
        t0 = time.monotonic()
        r = U.TRIES[mode](p, name, pw(name), "127.0.0.1", sentinel.port,
                          timeout=FAIL_BOUND + 5)
        res[key] = (r, round(time.monotonic() - t0, 2))
    jobs = [(f"{n}/{m}", m, n) for n in STALLED for m in ("socks", "connect")]
    jobs.append(("fsilent/forward", "forward", "fsilent"))
    ts = [threading.Thread(target=run, args=j) for j in jobs]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    want = {k: ("rep", 0x06) if m == "socks" else ("status", 504) for k, m, _ in jobs}
    got = {k: v[0] for k, v in res.items()}
    bad = {k: res.get(k) for k in want if got.get(k) != want[k]}
    assert not bad, f"want 0x06 / 504; got (reply, seconds): {bad}"
    slow = {k: v for k, v in res.items() if not 0.8 <= v[1] <= FAIL_BOUND}
    assert not slow, f"answered too early or too late: {slow}"
    assert sentinel.peers() == []
    assert p.alive()


def test_no_fd_leak_after_failures(uproxy, ustack, sentinel):
    names = ["fdead", "fdeadhttp", "fdisabled", "fgarbage", "fgarbagehttp", "f403",
             "fsocksbadauth", "fhttpbadauth", "fwrongca", "fwrongname", "ftlsplain"]
    for n in names:  # warm-up: pools, sessions, health state
        all_modes(uproxy, n, sentinel)
    base = uproxy.fd_count()
    for _ in range(3):
        for n in names:
            all_modes(uproxy, n, sentinel)
    ok = wait_until(lambda: uproxy.fd_count() <= base + 4, 15, interval=0.2)
    assert ok, f"fds: {base} before, {uproxy.fd_count()} after 99 failed connections"
    assert sentinel.peers() == []


# ---------------------------------------------------------------------------------------------
def test_kill9_mid_transfer_then_down_then_back(up_factory, ustack, tmp_path):
    """kill -9 of a SOCKS5 upstream during a large download: the client's stream ends, the proxy
    keeps serving others, new connections on that route are refused (never direct) until the
    upstream is back on the same port, then the health check brings it back."""
    dante = U.Dante(tmp_path / "dante-k9", external=U.DANTE_A_EXIT, auth=True).start()
    try:
        proxies = [socks("k9", dante.port, on_failure="reject"),
                   socks("k9-other", ustack.dante_b.port, creds=False)]
        users = {"users": [user("k9user", "k9"), user("charlie", None),
                           user("frank", "k9-other")]}
        p = up_factory("up-k9", up_config(ustack), users, proxies)
        big = 4 << 30
        r = socks5_open(p.socks_port, "127.0.0.1", ustack.target.port, user="k9user",
                        pw=pw("k9user"))
        assert r.rep == 0, r
        s = r.sock
        s.sendall(f"GET /bytes/{big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = 0
        s.settimeout(TIMEOUT)
        while got < (8 << 20):
            d = s.recv(1 << 20)
            assert d, f"stream ended early after {got} bytes"
            got += len(d)
        dante.kill9()
        how = stream_end(s, 20)
        s.close()
        assert how in ("eof", "reset"), f"client stream after kill -9 of the upstream: {how}"
        # The proxy serves everyone else.
        assert p.alive()
        assert U.socks_try(p, "charlie", pw("charlie"), "127.0.0.1",
                           ustack.target.port) == ("ok", U.DIRECT)
        assert U.connect_try(p, "frank", pw("frank"), "127.0.0.1",
                             ustack.target.port) == ("ok", U.DANTE_B_EXIT)
        # The dead route is refused, never direct.
        sentinel = U.AddrTarget("sentinel")
        try:
            for _ in range(3):
                got = all_modes(p, "k9user", sentinel)
                assert_refused(got, FAIL_RANGE)
            assert sentinel.peers() == [], sentinel.peers()
        finally:
            sentinel.close()
        # Back on the same port: the health check re-admits it.
        dante.start()
        t0 = time.monotonic()
        tries = []

        def back():
            st = U.socks_try(p, "k9user", pw("k9user"), "127.0.0.1", ustack.target.port)
            tries.append(st)
            return st == ("ok", U.DANTE_A_EXIT)
        assert wait_until(back, 20, interval=0.5), \
            f"not back 20 s after restart: {tries[-3:]}"
        assert all(t[0] != "ok" or t[1] == U.DANTE_A_EXIT for t in tries), tries
        assert U.connect_try(p, "k9user", pw("k9user"), "127.0.0.1",
                             ustack.target.port) == ("ok", U.DANTE_A_EXIT)
        print(f"upstream back {time.monotonic() - t0:.1f} s after restart")
    finally:
        dante.stop()
