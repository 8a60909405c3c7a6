"""Defects issue, item 0: on a keep-alive HTTP connection every forwarded request is authorised,
routed, limited and counted as the user who sent it. A second user (in turn or pipelined) never
rides the first user's origin connection past their own ACL or route, and the access log gives
each user their own line."""
import json
import os
import time
import uuid

import pytest

from clients import HttpConn, http_request
from limits_helpers import password, start_proxy, stop_proxy, users, watched

pytestmark = pytest.mark.uringproxy_only

LOOPBACK = {"allow": ["127.0.0.0/8"]}


@pytest.fixture(scope="module")
def _proxy(instances, servers):
    # bob and erin may reach loopback; alice may not (deny_private); carl may, but his route is
    # an upstream that is down with on_failure reject, so he must never leave directly.
    doc = users(("bob", LOOPBACK), ("erin", LOOPBACK), "alice",
                ("carl", dict(LOOPBACK, external_proxy_id="dead")))
    over = {"acl": {"deny_private": True}, "proxies_file": "external_proxy.json",
            "routing": {"on_failure": "reject"}}
    p = instances.make("keepalive-users", over, doc)
    proxies = {"proxies": [{"id": "dead", "type": "socks5", "address": "127.0.0.1",
                            "port": servers.closed, "enabled": True, "on_failure": "reject"}]}
    path = p.workdir / "external_proxy.json"
    path.write_text(json.dumps(proxies))
    os.chmod(path, 0o600)
    p.my_users = doc
    p.start()
    yield p
    stop_proxy(p)


@pytest.fixture
def proxy(_proxy):
    yield from watched(_proxy)


def req(origin, user, marker, path="/info"):
    hp = f"127.0.0.1:{origin.port}"
    return http_request("GET", f"http://{hp}{path}?{marker}", host_header=hp,
                        auth=(user, password(user)))


def exchange(p, origin, *users_, pipelined=False):
    """Sends one request per user on one connection; returns (statuses, markers). A status is
    None when the proxy closed the connection before answering."""
    markers = [uuid.uuid4().hex for _ in users_]
    c = HttpConn(p.http_port)
    statuses = []
    try:
        if pipelined:
            c.send(b"".join(req(origin, u, m) for u, m in zip(users_, markers)))
        for u, m in zip(users_, markers):
            if not pipelined:
                try:
                    c.send(req(origin, u, m))
                except (BrokenPipeError, ConnectionResetError):
                    statuses.append(None)
                    continue
            try:
                statuses.append(c.read_response().status)
            except (EOFError, ConnectionResetError):
                statuses.append(None)
    finally:
        c.close()
    return statuses, markers


def origin_saw(origin, marker, wait=0.3):
    time.sleep(wait)
    return bool(origin.find(marker))


@pytest.mark.parametrize("pipelined", [False, True], ids=["in-turn", "pipelined"])
def test_denied_user_after_allowed_user(proxy, servers, pipelined):
    st, (mb, ma) = exchange(proxy, servers.origin, "bob", "alice", pipelined=pipelined)
    assert st == [200, 403], f"bob then alice on one connection: {st}"
    assert origin_saw(servers.origin, mb)
    assert not origin_saw(servers.origin, ma), "alice's request reached the origin past her ACL"


def test_denied_user_before_allowed_user(proxy, servers):
    st, (ma, mb) = exchange(proxy, servers.origin, "alice", "bob")
    assert st[0] == 403, st
    assert not origin_saw(servers.origin, ma)
    # The refusal ends the connection; bob on his own connection is unaffected.
    st, (mb,) = exchange(proxy, servers.origin, "bob")
    assert st == [200] and origin_saw(servers.origin, mb)


@pytest.mark.parametrize("pipelined", [False, True], ids=["in-turn", "pipelined"])
def test_down_route_user_after_direct_user_fails_closed(proxy, servers, pipelined):
    st, (mb, mc) = exchange(proxy, servers.origin, "bob", "carl", pipelined=pipelined)
    assert st == [200, 502], f"bob then carl (upstream down, on_failure reject): {st}"
    assert not origin_saw(servers.origin, mc), "carl's request left directly"


def test_down_route_user_before_direct_user(proxy, servers):
    st, (mc, mb) = exchange(proxy, servers.origin, "carl", "bob")
    assert st[0] == 502, st
    assert not origin_saw(servers.origin, mc)


def test_each_user_gets_own_origin_connection_and_log_line(proxy, servers):
    start = proxy.mark()
    markers = [uuid.uuid4().hex for _ in range(3)]
    c = HttpConn(proxy.http_port)
    clients = []
    try:
        for u, m in zip(["bob", "bob", "erin"], markers):
            c.send(req(servers.origin, u, m))
            r = c.read_response()
            assert r.status == 200, (u, r)
            clients.append(tuple(json.loads(r.body)["client"]))
    finally:
        c.close()
    # bob's two requests share an origin connection; erin's does not ride it.
    assert clients[0] == clients[1], clients
    assert clients[2] != clients[0], f"erin reused bob's origin connection: {clients}"
    logs = proxy.wait_access_log(lambda o: o.get("user") == "erin", start=start)
    assert logs, proxy.output_text(start)
    lines = [o for o in proxy.access_logs(start) if o.get("user") in ("bob", "erin")]
    by_user = {o["user"]: o for o in lines}
    assert sorted(o["user"] for o in lines) == ["bob", "erin"], lines
    for u in ("bob", "erin"):
        assert by_user[u]["result"] == "ok", by_user[u]
        assert by_user[u]["bytes_down"] > 0 and by_user[u]["bytes_up"] > 0, by_user[u]
    # bob sent two requests, erin one: the byte counts are each user's own.
    assert by_user["bob"]["bytes_up"] > by_user["erin"]["bytes_up"], lines


@pytest.mark.parametrize("pipelined", [False, True], ids=["in-turn", "pipelined"])
def test_wrong_password_after_accepted_one_is_refused(proxy, servers, pipelined):
    # A request that repeats the accepted Proxy-Authorization skips the second check; one
    # whose credentials differ by anything (here only the password) is checked again.
    hp = f"127.0.0.1:{servers.origin.port}"
    good, bad = uuid.uuid4().hex, uuid.uuid4().hex
    reqs = [http_request("GET", f"http://{hp}/info?{good}", host_header=hp,
                         auth=("bob", password("bob"))),
            http_request("GET", f"http://{hp}/info?{bad}", host_header=hp,
                         auth=("bob", password("bob") + "x"))]
    c = HttpConn(proxy.http_port)
    statuses = []
    try:
        if pipelined:
            c.send(b"".join(reqs))
        for r in reqs:
            if not pipelined:
                c.send(r)
            statuses.append(c.read_response().status)
    finally:
        c.close()
    assert statuses == [200, 407], statuses
    assert origin_saw(servers.origin, good)
    assert not origin_saw(servers.origin, bad), "a wrong password rode the accepted one"
