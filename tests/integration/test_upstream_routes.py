"""Per-user upstream routes (docs/configuration.md#external_proxyjson, 2.4 steps 3-4, 2.7): each user leaves by its own route
- socks5s, https, socks5, http upstreams or directly - whatever the client speaks to the
proxy; the target name goes to the upstream unresolved; the access log names the route."""

import sys

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U
from clients import (curl_sha256, echo_roundtrip, http_connect, socks5_open)
from servers import wait_until
from upstream_conftest import ONLY_UPSTREAM, pw

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only

# user -> (route id, the address the target sees)
ROUTES = {
    "alice": ("proxy-us", U.DANTE_A_EXIT),        # socks5s -> stunnel -> dante A
    "bob": ("proxy-eu", U.TINYPROXY_EXIT),        # https -> stunnel -> tinyproxy
    "charlie": ("direct", U.DIRECT),              # external_proxy_id null
    "dan": ("proxy-socks", U.DANTE_A_EXIT),       # socks5 with RFC 1929
    "erin": ("proxy-http", U.TINYPROXY_EXIT),     # http CONNECT with Basic
    "frank": ("proxy-socks-open", U.DANTE_B_EXIT),  # socks5, no credentials
    "ivan": ("proxy-us-ip", U.DANTE_A_EXIT),      # socks5s, server_name from the IP address
}


@pytest.mark.parametrize("mode", U.MODES)
@pytest.mark.parametrize("user", list(ROUTES))
def test_user_leaves_by_its_route(uproxy, ustack, user, mode):
    route, exit_ip = ROUTES[user]
    mark = ustack.target.mark()
    ok, got = U.fetch_ip(mode, uproxy, user, pw(user), ustack.target)
    assert ok, f"{user} ({route}) via {mode}: {got}"
    assert got == exit_ip, f"{user} ({route}) via {mode}: target saw {got}, want {exit_ip}"
    seen = ustack.target.peers(mark)
    if route != "direct":
        assert U.DIRECT not in seen, f"{user} ({route}) via {mode}: a direct connection too: {seen}"


def test_target_name_reaches_socks_upstream_unresolved(uproxy, ustack):
    """A name only the upstream can resolve: the proxy's own resolver says NXDOMAIN, so the
    tunnel works only if the name went to the upstream as a SOCKS5 domain address."""
    n = len(ustack.recorder.log)
    q = len(ustack.dns.queries)
    st, got = U.socks_try(uproxy, "rec", pw("rec"), ONLY_UPSTREAM, ustack.target.port)
    assert (st, got) == ("ok", U.RECORDER_EXIT), (st, got)
    st, got = U.connect_try(uproxy, "rec", pw("rec"), ONLY_UPSTREAM, ustack.target.port)
    assert (st, got) == ("ok", U.RECORDER_EXIT), (st, got)
    log = ustack.recorder.log[n:]
    assert len(log) == 2, log
    for rec in log:
        assert rec["atyp"] == 3 and rec["host"] == ONLY_UPSTREAM, rec
        assert rec["port"] == ustack.target.port and rec["user"] == "recuser", rec
    asked = [name for name, _ in ustack.dns.queries[q:] if ONLY_UPSTREAM in name]
    assert not asked, f"the proxy resolved the name itself: {asked}"


def test_target_name_reaches_http_upstream_unresolved(uproxy, ustack):
    """tinyproxy logs the CONNECT line it got: the name, not an address."""
    host = "localhost"
    st, got = U.connect_try(uproxy, "erin", pw("erin"), host, ustack.target.port)
    assert (st, got) == ("ok", U.TINYPROXY_EXIT), (st, got)
    want = f"CONNECT {host}:{ustack.target.port} "
    assert wait_until(lambda: any(r.startswith(want) for r in ustack.tiny.connect_requests()),
                      10), f"tinyproxy never got {want!r}: {ustack.tiny.connect_requests()[-5:]}"


@pytest.mark.parametrize("user,mode", [("alice", "socks5h-curl"), ("bob", "http-connect"),
                                       ("dan", "http-forward"), ("erin", "socks5h-curl")])
def test_download_32mib_through_upstream(uproxy, ustack, user, mode):
    n = 32 << 20
    rc, sha, size, err = curl_sha256(U.curl_proxy_args(mode, uproxy, user, pw(user))
                                     + ["-f", ustack.target.url(f"/bytes/{n}")])
    assert rc == 0, f"{user} via {mode}: curl rc={rc}: {err}"
    assert size == n and sha == U.sha256_of(n), f"{user} via {mode}: {size} bytes, sha differs"


@pytest.mark.parametrize("user", ["alice", "bob", "dan", "erin"])
def test_full_duplex_echo_through_upstream(uproxy, ustack, user):
    """8 MiB echoed both ways at once, over SOCKS5 and over CONNECT (TLS upstreams included)."""
    import os
    payload = os.urandom(8 << 20)
    r = socks5_open(uproxy.socks_port, "127.0.0.1", ustack.echo.port, user=user, pw=pw(user))
    assert r.rep == 0, r
    echo_roundtrip(r.sock, payload)
    r.sock.close()
    c, resp = http_connect(uproxy.http_port, "127.0.0.1", ustack.echo.port, user=user,
                           pw=pw(user))
    assert resp.status == 200, resp
    echo_roundtrip(c.s, payload)
    c.close()


def _one(proxy, user, target):
    st, got = U.socks_try(proxy, user, pw(user), "127.0.0.1", target.port)
    assert st == "ok", (user, st, got)
    return got


@pytest.mark.parametrize("user,group,routes", [
    ("charlie", None, {"direct"}),
    ("alice", None, {"proxy-us"}),
    ("bob", None, {"proxy-eu"}),
    ("erin", None, {"proxy-http"}),
    ("alice", "us-east", {"g-a", "g-b"}),
])
def test_access_log_names_route_and_group(uproxy, ustack, user, group, routes):
    name = f"{user}.{group}" if group else user
    start = uproxy.mark()
    st, got = U.socks_try(uproxy, name, pw(user), "127.0.0.1", ustack.target.port)
    assert st == "ok", (st, got)
    want_target = f"127.0.0.1:{ustack.target.port}"
    rec = uproxy.wait_access_log(lambda o: o.get("target") == want_target
                                 and str(o.get("user", "")).split(".")[0] == user, 20, start)
    assert rec is not None, "no access-log line:\n" + "\n".join(uproxy.stderr_lines(start)[-20:])
    assert rec.get("route") in routes, f"route {rec.get('route')!r}, want one of {routes}: {rec}"
    assert "group" in rec, f"no 'group' key: {rec}"
    assert rec["group"] == group, f"group {rec['group']!r}, want {group!r}: {rec}"


def test_health_check_probes_through_http_upstreams(uproxy, ustack):
    """health_check.target is set: http/https upstreams are probed with a real CONNECT to it, so
    the health target sees tinyproxy's address; nothing reaches it directly."""
    ok = wait_until(lambda: U.TINYPROXY_EXIT in ustack.health_target.peers(), 15)
    assert ok, f"health target saw {ustack.health_target.peers()}"
    assert U.DIRECT not in ustack.health_target.peers(), ustack.health_target.peers()


def test_many_users_in_parallel(uproxy, ustack):
    """Mixed routes at once: every tunnel leaves by its own user's route."""
    import concurrent.futures as cf
    jobs = [(u, m) for u in ROUTES for m in ("socks", "connect")] * 3
    with cf.ThreadPoolExecutor(16) as ex:
        res = list(ex.map(lambda j: (j, U.TRIES[j[1]](uproxy, j[0], pw(j[0]), "127.0.0.1",
                                                        ustack.target.port)), jobs))
    bad = [(j, r) for j, r in res if r != ("ok", ROUTES[j[0]][1])]
    assert not bad, bad


@pytest.mark.parametrize("name", ["alice", "bob", "erin"])
def test_udp_associate_on_tcp_only_routes_is_0x07(uproxy, name):
    """docs/wire.md: UDP ASSOCIATE on a route that cannot carry UDP (socks5s, https, http)."""
    r = socks5_open(uproxy.socks_port, "0.0.0.0", 0, user=name, pw=pw(name), cmd=3)
    r.sock.close()
    assert r.rep == 0x07, r
