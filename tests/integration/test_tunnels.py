"""2. python3-socks CONNECT by IPv4 literal, IPv6 literal and domain; 4. pipelined handshakes;
7. half-close; plus a target that speaks first."""
import os
import socket

import pytest
import socks  # python3-socks (PySocks)

from clients import (TIMEOUT, echo_roundtrip, http_connect, recv_all, recv_exact,
                     send_in_background, socks5_open, stream_end)
from harness import PASSWORDS


def pysocks(proxy, user="alice"):
    s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
    s.set_proxy(socks.SOCKS5, "127.0.0.1", proxy.socks_port, rdns=True, username=user,
                password=PASSWORDS[user])
    s.settimeout(TIMEOUT)
    return s


def test_pysocks_ipv4_literal(proxy, servers):
    s = pysocks(proxy)
    s.connect(("127.0.0.1", servers.echo.port))
    payload = os.urandom(300000)
    echo_roundtrip(s, payload)
    s.close()


def test_pysocks_ipv6_literal(proxy, servers):
    if servers.echo6 is None:
        pytest.skip("no IPv6 loopback (::1) on this host")
    s = pysocks(proxy)
    s.connect(("::1", servers.echo6.port))
    echo_roundtrip(s, os.urandom(70000))
    s.close()


@pytest.mark.uringproxy_only
def test_pysocks_domain_via_test_dns(proxy, servers):
    s = pysocks(proxy, "bob")
    s.connect(("echo.test", servers.echo.port))
    echo_roundtrip(s, b"hello over a name" * 1000)
    s.close()
    assert any(q[0].lower() == "echo.test" for q in servers.dns.queries), \
        "the proxy did not ask the configured dns.servers"


@pytest.mark.uringproxy_only
def test_pysocks_domain_ipv6_only_name(proxy, servers):
    """v6.test has only an AAAA record (::1)."""
    if servers.echo6 is None:
        pytest.skip("no IPv6 loopback (::1) on this host")
    s = pysocks(proxy)
    s.connect(("v6.test", servers.echo6.port))
    echo_roundtrip(s, b"six" * 5000)
    s.close()


def test_target_speaks_first(proxy, servers):
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.banner.port, pw=PASSWORDS["alice"])
    assert r.rep == 0, r
    assert recv_exact(r.sock, 18) == b"220 banner ready\r\n"
    echo_roundtrip(r.sock, b"after banner")
    r.sock.close()
    c, resp = http_connect(proxy.http_port, "127.0.0.1", servers.banner.port,
                           pw=PASSWORDS["alice"])
    assert resp.status == 200, resp
    assert c.read_n(18) == b"220 banner ready\r\n"
    c.close()


# ---------------------------------------------------------------------------------------------
# 4. Pipelining
def test_socks5_pipelined_handshake_and_payload(proxy, servers):
    payload = b"pipelined-" + os.urandom(5000)
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"],
                    pipelined=True, payload=payload)
    assert r.method == 2 and r.auth_status == 0 and r.rep == 0, r
    assert recv_exact(r.sock, len(payload)) == payload
    r.sock.close()


@pytest.mark.uringproxy_only
def test_socks5_pipelined_domain_target(proxy, servers):
    payload = b"pipelined-name-" + os.urandom(3000)
    r = socks5_open(proxy.socks_port, "echo.test", servers.echo.port, user="carol",
                    pw=PASSWORDS["carol"], pipelined=True, payload=payload)
    assert r.rep == 0, r
    assert recv_exact(r.sock, len(payload)) == payload
    r.sock.close()


def test_http_connect_pipelined_payload(proxy, servers):
    payload = b"behind-connect-" + os.urandom(5000)
    c, resp = http_connect(proxy.http_port, "127.0.0.1", servers.echo.port,
                           pw=PASSWORDS["alice"], extra=payload)
    assert resp.status == 200, resp
    assert c.read_n(len(payload)) == payload
    c.close()


@pytest.mark.uringproxy_only
def test_http_connect_reply_line(proxy, servers):
    c, resp = http_connect(proxy.http_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 200, "Connection established"), resp
    c.close()


# ---------------------------------------------------------------------------------------------
# 7. Half-close
def _half_close_roundtrip(sock, pre=b""):
    data = os.urandom(1 << 20)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    import hashlib
    want = b"GOT %d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode())
    got = pre + recv_all(sock)
    assert got == want, f"drain server answer after half-close: {got[:200]!r}"


def test_half_close_socks5(proxy, servers):
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.drain.port, pw=PASSWORDS["alice"])
    assert r.rep == 0, r
    _half_close_roundtrip(r.sock)  # recv_all returning means the tunnel then closed (EOF)
    r.sock.close()


def test_half_close_http_connect(proxy, servers):
    c, resp = http_connect(proxy.http_port, "127.0.0.1", servers.drain.port,
                           pw=PASSWORDS["alice"])
    assert resp.status == 200, resp
    pre = bytes(c.buf)
    c.buf.clear()
    _half_close_roundtrip(c.s, pre)
    c.close()


def test_half_close_echo_then_tunnel_closes(proxy, servers):
    """Echo target: everything sent before our FIN comes back, then EOF (the target closed
    after our FIN reached it)."""
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert r.rep == 0, r
    data = os.urandom(3 << 20)
    t, err = send_in_background(r.sock, data, then_shutdown=True)
    got = recv_all(r.sock)
    t.join(TIMEOUT)
    assert not err, err
    assert len(got) == len(data) and got == data
    r.sock.close()


def test_target_closes_first(proxy, servers):
    """The reset server sends K bytes then RSTs: the client sees the stream end."""
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.reset.port, pw=PASSWORDS["alice"])
    assert r.rep == 0, r
    assert stream_end(r.sock) in ("eof", "reset")
    r.sock.close()


# ---------------------------------------------------------------------------------------------
def test_bulk_full_duplex_echo(proxy, servers):
    """32 MiB each way at once through one tunnel (both relay directions busy together)."""
    import hashlib
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert r.rep == 0, r
    data = os.urandom(1 << 20) * 32
    t, err = send_in_background(r.sock, data, then_shutdown=True)
    h = hashlib.sha256()
    n = 0
    r.sock.settimeout(TIMEOUT)
    while True:
        d = r.sock.recv(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
    t.join(TIMEOUT)
    assert not err, err
    assert n == len(data) and h.hexdigest() == hashlib.sha256(data).hexdigest()
    r.sock.close()


def test_many_concurrent_tunnels(proxy, servers):
    """150 SOCKS5 and 150 HTTP CONNECT tunnels open at once, each echoing its own bytes."""
    from concurrent.futures import ThreadPoolExecutor
    socks_t = []
    http_t = []
    with ThreadPoolExecutor(16) as ex:
        socks_t = list(ex.map(lambda _: socks5_open(proxy.socks_port, "127.0.0.1",
                                                    servers.echo.port, pw=PASSWORDS["alice"]),
                              range(150)))
        http_t = list(ex.map(lambda _: http_connect(proxy.http_port, "127.0.0.1",
                                                    servers.echo.port, pw=PASSWORDS["alice"]),
                             range(150)))
    assert all(r.rep == 0 for r in socks_t)
    assert all(resp.status == 200 for _, resp in http_t)
    for i, r in enumerate(socks_t):
        r.sock.sendall(b"s%05d" % i)
    for i, (c, _) in enumerate(http_t):
        c.send(b"h%05d" % i)
    for i, r in enumerate(socks_t):
        assert recv_exact(r.sock, 6) == b"s%05d" % i
    for i, (c, _) in enumerate(http_t):
        assert c.read_n(6) == b"h%05d" % i
    for r in socks_t:
        r.sock.close()
    for c, _ in http_t:
        c.close()


def test_http_connect_ipv6_literal(proxy, servers):
    if servers.echo6 is None:
        pytest.skip("no IPv6 loopback (::1) on this host")
    c, resp = http_connect(proxy.http_port, "::1", servers.echo6.port, pw=PASSWORDS["alice"])
    assert resp.status == 200, resp
    c.send(b"v6 via CONNECT")
    assert c.read_n(14) == b"v6 via CONNECT"
    c.close()


# ---------------------------------------------------------------------------------------------
@pytest.mark.uringproxy_only
def test_password_with_colon_space_utf8(proxy, servers):
    """RFC 1929 passwords are bytes; Basic splits at the first colon only (RFC 7617)."""
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, user="erin",
                    pw=PASSWORDS["erin"])
    assert (r.auth_status, r.rep) == (0, 0), r
    echo_roundtrip(r.sock, b"erin")
    r.sock.close()
    c, resp = http_connect(proxy.http_port, "127.0.0.1", servers.echo.port, user="erin",
                           pw=PASSWORDS["erin"])
    assert resp.status == 200, resp
    c.close()


@pytest.mark.uringproxy_only
def test_basic_scheme_case_insensitive(proxy, servers):
    import base64
    from clients import HttpConn
    tok = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    hp = f"127.0.0.1:{servers.echo.port}"
    for scheme in ("basic", "BASIC"):
        c = HttpConn(proxy.http_port)
        c.send(f"CONNECT {hp} HTTP/1.1\r\nHost: {hp}\r\nProxy-Authorization: {scheme} {tok}"
               "\r\n\r\n".encode())
        r = c.read_response("CONNECT")
        assert r.status == 200, f"scheme {scheme!r}: {r}"
        c.close()
