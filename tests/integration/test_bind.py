"""SOCKS5 BIND (docs/wire.md#bind) with a raw RFC 1928 client: the first reply names where the
proxy listens, the named peer connects, the second reply names that peer, then bytes flow both
ways; a peer from another address is closed and the wait goes on; no peer within
connect_timeout_ms is 0x06; an address the ACL forbids is 0x02 before anything listens;
upstream routes answer 0x07; a client that gives up leaves nothing behind; over IPv6 (an IPv6
listener, and a dual-stack one reached over both families)."""
from __future__ import annotations

import os
import socket

import pytest

from clients import (assert_served, read_socks5_reply, recv_exact, send_in_background,
                     socks5_auth, socks5_greeting, socks5_request, stream_end)
from harness import PASSWORDS
from servers import OkHttpProxy, ipv6_loopback_available, wait_until

WAIT = 20.0


class Bind:
    """A raw BIND request; `first` is the first reply (rep, host, port)."""

    def __init__(self, proxy_port, host, port, user="alice", proxy_host="127.0.0.1"):
        self.ctl = socket.create_connection((proxy_host, proxy_port), timeout=WAIT)
        self.ctl.sendall(socks5_greeting() + socks5_auth(user, PASSWORDS[user]))
        assert recv_exact(self.ctl, 2) == b"\x05\x02"
        assert recv_exact(self.ctl, 2) == b"\x01\x00"
        self.ctl.sendall(socks5_request(host, port, cmd=2))
        self.rep, self.host, self.port = read_socks5_reply(self.ctl)

    def second(self):
        return read_socks5_reply(self.ctl)

    def close(self):
        self.ctl.close()


def peer(b: Bind, source="127.0.0.1") -> socket.socket:
    """Connects to where the first reply said, from `source`."""
    s = socket.socket(socket.AF_INET6 if ":" in source else socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(WAIT)
    s.connect((b.host, b.port))
    return s


def refused(host, port) -> bool:
    try:
        socket.create_connection((host, port), timeout=WAIT).close()
    except ConnectionRefusedError:
        return True
    return False


def both_ways(client: socket.socket, p: socket.socket, up: bytes, down: bytes):
    t1, e1 = send_in_background(client, up)
    t2, e2 = send_in_background(p, down)
    assert recv_exact(p, len(up)) == up
    assert recv_exact(client, len(down)) == down
    t1.join(WAIT)
    t2.join(WAIT)
    assert not e1 and not e2, (e1, e2)


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("named", ["127.0.0.1", "bind.test"])
def test_both_replies_then_relay(proxy, named):
    start = proxy.mark()
    b = Bind(proxy.socks_port, named, 0)
    try:
        # The listening socket is on the address the client reached the listener on.
        assert b.rep == 0 and b.host == "127.0.0.1", (b.rep, b.host)
        assert b.port not in (0, proxy.socks_port)
        # Bytes the client sends before the peer arrives reach the peer first, in order.
        b.ctl.sendall(b"early|")
        p = peer(b)
        rep, host, port = b.second()
        assert rep == 0 and (host, port) == p.getsockname(), (rep, host, port, p.getsockname())
        up, down = os.urandom(300_000), os.urandom(200_000)
        assert recv_exact(p, 6) == b"early|"
        both_ways(b.ctl, p, up, down)
        # Only one connection: the listening socket is gone.
        assert refused(b.host, b.port)
        b.ctl.shutdown(socket.SHUT_WR)
        assert stream_end(p) == "eof"  # the client's EOF is passed on
        p.close()
        assert stream_end(b.ctl) == "eof"
    finally:
        b.close()
    line = proxy.wait_access_log(lambda o: o.get("target") == f"127.0.0.1:{port}", start=start)
    assert line, proxy.stderr_lines(start)[-10:]
    assert line["result"] == "ok" and line["user"] == "alice" and line["route"] == "direct", line
    assert line["bytes_up"] == 6 + len(up) and line["bytes_down"] == len(down), line


@pytest.mark.uringproxy_only
def test_foreign_peer_is_closed_and_the_named_one_accepted(proxy):
    b = Bind(proxy.socks_port, "127.0.0.3", 0)
    try:
        assert b.rep == 0
        foreign = peer(b, source="127.0.0.2")
        assert stream_end(foreign) in ("eof", "reset")  # closed, and it did not count
        foreign.close()
        p = peer(b, source="127.0.0.3")
        rep, host, port = b.second()
        assert rep == 0 and (host, port) == p.getsockname(), (rep, host, port)
        both_ways(b.ctl, p, b"ping", b"pong")
        p.close()
    finally:
        b.close()


@pytest.mark.uringproxy_only
def test_unspecified_address_accepts_any_peer(proxy):
    b = Bind(proxy.socks_port, "0.0.0.0", 0)
    try:
        assert b.rep == 0
        p = peer(b, source="127.0.0.5")
        rep, host, port = b.second()
        assert rep == 0 and (host, port) == p.getsockname()
        both_ways(b.ctl, p, b"a" * 1000, b"b" * 1000)
        p.close()
    finally:
        b.close()


@pytest.mark.uringproxy_only
def test_no_peer_within_connect_timeout_is_0x06(proxy):
    """The shared instance's upstream.connect_timeout_ms is 1500."""
    start = proxy.mark()
    b = Bind(proxy.socks_port, "127.0.0.1", 0)
    try:
        assert b.rep == 0
        rep, _, _ = b.second()
        assert rep == 0x06
        assert stream_end(b.ctl) in ("eof", "reset")
        assert refused(b.host, b.port)  # the listening socket is closed
    finally:
        b.close()
    line = proxy.wait_access_log(lambda o: o.get("user") == "alice" and o.get("target") ==
                                 "127.0.0.1:0", start=start)
    assert line and line["result"] == "timeout", line


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("named", ["127.0.0.1", "bind.test"])
def test_acl_forbidden_address_is_0x02_before_listening(strict_proxy, named):
    """deny_private: a literal loopback address, and a name resolving to one (post-DNS)."""
    start = strict_proxy.mark()
    b = Bind(strict_proxy.socks_port, named, 0)
    try:
        assert b.rep == 0x02, b.rep
        assert stream_end(b.ctl) in ("eof", "reset")  # one reply only
    finally:
        b.close()
    line = strict_proxy.wait_access_log(lambda o: o.get("target") == f"{named}:0", start=start)
    assert line and line["result"] == "denied", line


@pytest.mark.uringproxy_only
def test_any_address_still_judges_each_peer_by_the_acl(strict_proxy):
    """A BIND naming 0.0.0.0 under deny_private: a loopback peer is closed; none is left to
    accept, so the wait ends with 0x06."""
    b = Bind(strict_proxy.socks_port, "0.0.0.0", 0)
    try:
        assert b.rep == 0
        p = peer(b)
        assert stream_end(p) in ("eof", "reset")
        p.close()
        rep, _, _ = b.second()
        assert rep == 0x06
    finally:
        b.close()


@pytest.mark.uringproxy_only
def test_client_giving_up_cancels_the_wait(proxy, servers):
    before = proxy.fd_count()
    start = proxy.mark()
    ports = []
    for _ in range(10):
        b = Bind(proxy.socks_port, "127.0.0.1", 0, user="bob")
        assert b.rep == 0
        ports.append(b.port)
        b.close()
    got = wait_until(lambda: len([o for o in proxy.access_logs(start) if o.get("user") == "bob"])
                     >= 10, WAIT)
    assert got, proxy.stderr_lines(start)[-10:]
    lines = [o for o in proxy.access_logs(start) if o.get("user") == "bob"]
    assert {o["result"] for o in lines} == {"client_closed"}, lines
    assert all(refused("127.0.0.1", port) for port in ports)
    assert wait_until(lambda: proxy.fd_count() <= before, WAIT), (before, proxy.fd_count())
    assert_served(proxy, servers, "after BIND clients gave up")


@pytest.mark.uringproxy_only
def test_upstream_routes_answer_0x07_listed_and_kicked(fresh_proxy):
    """Fail closed on socks5 and http routes (never direct); a direct BIND shows in
    `uringproxyctl connections` as bind:<peer> while it relays, and `kick` ends a wait."""
    import upstreams as U
    from ctl_helpers import run_ctl
    from harness import users_doc
    socks_up = U.RecordingSocks5()
    http_up = OkHttpProxy()
    users = users_doc()
    for u in users["users"]:
        if u["username"] == "alice":
            u["external_proxy_id"] = "socks-up"
        if u["username"] == "bob":
            u["external_proxy_id"] = "http-up"
    p = fresh_proxy({"proxies_file": "external_proxy.json",
                     "control": {"socket": "control.sock"}}, users=users, start=False)
    p.workdir.mkdir(parents=True, exist_ok=True)
    U.write_proxies_file(p.workdir, [
        {"id": "socks-up", "type": "socks5", "address": "127.0.0.1", "port": socks_up.port,
         "enabled": True, "on_failure": "reject"},
        {"id": "http-up", "type": "http", "address": "127.0.0.1", "port": http_up.port,
         "enabled": True, "on_failure": "reject"},
    ])
    try:
        p.start()
        for user in ("alice", "bob"):
            b = Bind(p.socks_port, "127.0.0.1", 0, user=user)
            try:
                assert b.rep == 0x07, (user, b.rep)
                assert stream_end(b.ctl) in ("eof", "reset")
            finally:
                b.close()
        assert not socks_up.log, socks_up.log  # nothing was asked of the upstream

        b = Bind(p.socks_port, "127.0.0.1", 0, user="carol")  # a direct route
        try:
            assert b.rep == 0
            pc = peer(b)
            rep, host, port = b.second()
            assert rep == 0
            both_ways(b.ctl, pc, b"x", b"y")
            r = run_ctl(["--socket", str(p.workdir / "control.sock"), "--json", "connections",
                         "--user", "carol"])
            assert r.rc == 0, r
            conns = r.json()["connections"]
            assert [c["target"] for c in conns] == [f"bind:127.0.0.1:{port}"], conns
            pc.close()
        finally:
            b.close()

        # Kicked while waiting: the wait ends at once and the listening socket is closed.
        b = Bind(p.socks_port, "127.0.0.1", 0, user="carol")
        try:
            assert b.rep == 0
            start = p.mark()
            assert run_ctl(["--socket", str(p.workdir / "control.sock"), "kick", "carol"]).rc == 0
            line = p.wait_access_log(lambda o: o.get("user") == "carol" and
                                     o.get("target") == "127.0.0.1:0", start=start)
            assert line and line["result"] == "kicked", line
            assert stream_end(b.ctl) in ("eof", "reset")
            assert refused(b.host, b.port)
        finally:
            b.close()
    finally:
        socks_up.close()
        http_up.close()


@pytest.mark.uringproxy_only
@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) on this host")
@pytest.mark.parametrize("listen", ["[::1]", "[::]"])
def test_ipv6_both_replies_then_relay(fresh_proxy, listen):
    """A client reaching an IPv6 listener over ::1: the proxy listens on ::1 and both replies
    carry IPv6 addresses (ATYP 4), for a request naming ::1, naming :: (any peer) and naming a
    name with only an AAAA record; a peer from 127.0.0.1 is not the ::1 that was named. On a
    dual-stack listener ([::]) an IPv4 client still gets an IPv4 listening address."""
    p = fresh_proxy(start=False)
    p.config["listeners"] = [
        {"name": "socks6", "protocol": "socks5", "listen": f"{listen}:{p.socks_port}"}]
    p.start()
    start = p.mark()
    for named in ("::1", "::", "v6.test"):
        b = Bind(p.socks_port, named, 0, proxy_host="::1")
        try:
            assert b.rep == 0 and b.host == "::1", (named, b.rep, b.host)
            assert b.port not in (0, p.socks_port)
            if named == "::1":
                # Not the named address (IPv4 loopback): closed, and the wait goes on.
                try:
                    foreign = socket.create_connection(("127.0.0.1", b.port), timeout=WAIT)
                except ConnectionRefusedError:
                    foreign = None  # nothing listens on IPv4 at all: fine too
                if foreign is not None:
                    assert stream_end(foreign) in ("eof", "reset")
                    foreign.close()
            pc = peer(b, source="::1")
            rep, host, port = b.second()
            assert rep == 0 and (host, port) == pc.getsockname()[:2], (named, rep, host, port)
            both_ways(b.ctl, pc, os.urandom(100_000), os.urandom(50_000))
            assert refused("::1", b.port)  # one connection only
            pc.close()
            assert stream_end(b.ctl) == "eof"
        finally:
            b.close()
        line = p.wait_access_log(lambda o: o.get("target") == f"[::1]:{port}" or
                                 o.get("target") == f"::1:{port}", start=start)
        assert line and line["result"] == "ok", (named, line, p.stderr_lines(start)[-10:])
        assert line["bytes_up"] == 100_000 and line["bytes_down"] == 50_000, line
    if listen == "[::]":
        b = Bind(p.socks_port, "127.0.0.1", 0)  # IPv4 client of the dual-stack listener
        try:
            assert b.rep == 0 and b.host == "127.0.0.1", (b.rep, b.host)
            pc = peer(b)
            rep, host, port = b.second()
            assert rep == 0 and (host, port) == pc.getsockname(), (rep, host, port)
            both_ways(b.ctl, pc, b"four", b"six?")
            pc.close()
        finally:
            b.close()
    # No peer in time over IPv6 either: 0x06, and the listening socket is gone.
    b = Bind(p.socks_port, "::1", 0, proxy_host="::1")
    try:
        assert b.rep == 0 and b.host == "::1"
        rep, _, _ = b.second()
        assert rep == 0x06, rep
        assert refused("::1", b.port)
    finally:
        b.close()
