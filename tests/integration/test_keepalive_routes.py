"""Defects issue, items 0 and 7: consecutive forwarded requests on one keep-alive connection that
take different routes each get a fresh origin connection on their own route: nothing of the
previous route (its socket, its upstream handshake, its TLS session) carries over."""
import sys

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U
from clients import HttpConn, http_request
from upstream_conftest import pw

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only


@pytest.fixture
def second_target():
    t = U.AddrTarget("second")
    yield t
    t.close()


def keepalive_ips(proxy, steps):
    """steps: [(user, target)]; GET /ip for each on one connection -> [(status, body)]."""
    c = HttpConn(proxy.http_port, timeout=30)
    out = []
    try:
        for user, target in steps:
            hp = f"127.0.0.1:{target.port}"
            c.send(http_request("GET", f"http://{hp}/ip", host_header=hp, auth=(user, pw(user))))
            r = c.read_response()
            out.append((r.status, r.body.decode(errors="replace")))
    finally:
        c.close()
    return out


@pytest.mark.parametrize("order", ["tls-then-direct", "direct-then-tls"])
def test_tls_route_then_direct_route(uproxy, ustack, second_target, order):
    # bob leaves through an https upstream (stunnel -> tinyproxy), charlie directly.
    tls_step, direct_step = ("bob", ustack.target), ("charlie", second_target)
    steps = [tls_step, direct_step] if order == "tls-then-direct" else [direct_step, tls_step]
    got = dict(zip([s[0] for s in steps], keepalive_ips(uproxy, steps)))
    assert got["bob"] == (200, U.TINYPROXY_EXIT), got
    assert got["charlie"] == (200, "127.0.0.1"), got


def test_same_origin_other_user_other_route(uproxy, ustack):
    # The same origin for both: charlie must not ride bob's upstream connection.
    got = keepalive_ips(uproxy, [("bob", ustack.target), ("charlie", ustack.target)])
    assert got == [(200, U.TINYPROXY_EXIT), (200, "127.0.0.1")], got
