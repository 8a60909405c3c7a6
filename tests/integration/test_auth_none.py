"""11. auth: none — SOCKS5 method 0x00 accepted, HTTP without credentials accepted."""
import json
import os
import uuid

import pytest

from clients import (HttpConn, connect, echo_roundtrip, http_connect, http_request,
                     read_socks5_reply, recv_exact, socks5_greeting, socks5_open,
                     socks5_request)

pytestmark = pytest.mark.uringproxy_only


def test_socks5_method_00(noauth_proxy, servers):
    r = socks5_open(noauth_proxy.socks_port, "127.0.0.1", servers.echo.port, user=None)
    assert r.method == 0x00, r
    assert r.rep == 0, r
    echo_roundtrip(r.sock, os.urandom(100000))
    r.sock.close()


def test_socks5_method_00_pipelined_domain(noauth_proxy, servers):
    s = connect(noauth_proxy.socks_port)
    payload = b"noauth pipelined"
    s.sendall(socks5_greeting((0x00,)) + socks5_request("echo.test", servers.echo.port) + payload)
    assert recv_exact(s, 2) == b"\x05\x00"
    rep, _, _ = read_socks5_reply(s)
    assert rep == 0
    assert recv_exact(s, len(payload)) == payload
    s.close()


def test_socks5_offering_both_methods(noauth_proxy, servers):
    s = connect(noauth_proxy.socks_port)
    s.sendall(socks5_greeting((0x02, 0x00)))
    ver, method = recv_exact(s, 2)
    assert ver == 5 and method in (0x00, 0x02), method
    if method == 0x02:  # allowed, though 0x00 is the natural pick with auth none
        s.sendall(b"\x01\x01x\x01y")
        assert recv_exact(s, 2) == b"\x01\x00"
    s.sendall(socks5_request("127.0.0.1", servers.echo.port))
    rep, _, _ = read_socks5_reply(s)
    assert rep == 0
    echo_roundtrip(s, b"both")
    s.close()


def test_http_connect_without_credentials(noauth_proxy, servers):
    c, resp = http_connect(noauth_proxy.http_port, "127.0.0.1", servers.echo.port, pw=None)
    assert resp.status == 200, resp
    c.send(b"hello")
    assert c.read_n(5) == b"hello"
    c.close()


def test_http_forward_without_credentials(noauth_proxy, servers):
    m = uuid.uuid4().hex
    hp = f"origin.test:{servers.origin.port}"
    c = HttpConn(noauth_proxy.http_port)
    for i in range(2):
        c.send(http_request("GET", f"http://{hp}/info?i={i}&m={m}", host_header=hp, auth=None))
        r = c.read_response()
        assert r.status == 200, r
        assert json.loads(r.body)["target"] == f"/info?i={i}&m={m}"
    c.close()
