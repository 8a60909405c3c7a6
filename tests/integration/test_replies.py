"""5. Reply codes (docs/wire.md), SOCKS5 and HTTP, for every refusal the data plane makes."""
import socket
import time

import pytest

from clients import (HttpConn, connect, http_connect, http_request, read_socks5_reply,
                     recv_exact, socks5_auth, socks5_greeting, socks5_open, stream_end)
from harness import PASSWORDS, WRONG_PASSWORD

REALM = 'Basic realm="uringproxy"'
BAD_CREDS = {
    "wrong-password": ("alice", WRONG_PASSWORD),
    "unknown-user": ("mallory", WRONG_PASSWORD),
    "disabled-user": ("dave", PASSWORDS["dave"]),
}


def assert_closed(sock, what):
    end = stream_end(sock, timeout=20)
    assert end in ("eof", "reset"), f"{what}: proxy kept the connection open after refusing"
    sock.close()


# ---------------------------------------------------------------------------------------------
# Authentication
@pytest.mark.uringproxy_only
@pytest.mark.parametrize("case", list(BAD_CREDS))
def test_socks5_bad_credentials(proxy, servers, case):
    user, pw = BAD_CREDS[case]
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, user=user, pw=pw)
    assert r.method == 0x02, r
    assert r.auth_status == 0x01, f"{case}: auth status {r.auth_status}, want 0x01"
    assert_closed(r.sock, case)


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("case", list(BAD_CREDS))
@pytest.mark.parametrize("kind", ["connect", "forward"])
def test_http_bad_credentials_407(proxy, servers, case, kind):
    user, pw = BAD_CREDS[case]
    c = HttpConn(proxy.http_port)
    if kind == "connect":
        hp = f"127.0.0.1:{servers.echo.port}"
        c.send(http_request("CONNECT", hp, host_header=hp, auth=(user, pw)))
    else:
        hp = f"127.0.0.1:{servers.origin.port}"
        c.send(http_request("GET", f"http://{hp}/bytes/10", host_header=hp, auth=(user, pw)))
    r = c.read_response("GET")
    assert r.status == 407, r
    assert REALM in r.header_all("Proxy-Authenticate"), r
    c.close()


@pytest.mark.parametrize("kind", ["connect", "forward"])
def test_http_no_credentials_407(proxy, servers, kind):
    c = HttpConn(proxy.http_port)
    if kind == "connect":
        hp = f"127.0.0.1:{servers.echo.port}"
        c.send(http_request("CONNECT", hp, host_header=hp, auth=None))
    else:
        hp = f"127.0.0.1:{servers.origin.port}"
        c.send(http_request("GET", f"http://{hp}/bytes/10", host_header=hp, auth=None))
    r = c.read_response("GET")
    assert r.status == 407, r
    if proxy.kind != "peer":
        assert REALM in r.header_all("Proxy-Authenticate"), r
    c.close()


def test_socks5_no_acceptable_method(proxy):
    """auth required and the client offers only 0x00 → 0xFF, then close."""
    s = connect(proxy.socks_port)
    s.sendall(socks5_greeting((0x00,)))
    assert recv_exact(s, 2) == b"\x05\xff"
    assert_closed(s, "method 0xFF")


@pytest.mark.uringproxy_only
def test_socks5_gssapi_only_refused(proxy):
    s = connect(proxy.socks_port)
    s.sendall(socks5_greeting((0x01,)))
    assert recv_exact(s, 2) == b"\x05\xff"
    assert_closed(s, "method 0xFF")


# ---------------------------------------------------------------------------------------------
# Target failures
def test_socks5_target_refused(proxy, servers):
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.closed, pw=PASSWORDS["alice"])
    assert r.rep == 0x05, r
    assert_closed(r.sock, "refused")


@pytest.mark.uringproxy_only
def test_socks5_dns_nxdomain(proxy, servers):
    r = socks5_open(proxy.socks_port, "nx.test", servers.echo.port, pw=PASSWORDS["alice"])
    assert r.rep == 0x04, r
    assert_closed(r.sock, "nxdomain")


@pytest.mark.uringproxy_only
def test_socks5_connect_timeout(proxy, servers):
    assert servers.blackhole.verify(), "the black hole accepts connections on this kernel"
    t0 = time.monotonic()
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.blackhole.port, pw=PASSWORDS["alice"],
                    timeout=30)
    elapsed = time.monotonic() - t0
    assert r.rep == 0x06, r
    assert elapsed < 20, f"connect_timeout_ms 1500 took {elapsed:.1f}s"
    assert_closed(r.sock, "timeout")


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("kind", ["connect", "forward"])
@pytest.mark.parametrize("case,want", [("refused", 502), ("nxdomain", 502), ("timeout", 504)])
def test_http_target_failures(proxy, servers, kind, case, want):
    if case == "refused":
        hp = f"127.0.0.1:{servers.closed}"
    elif case == "nxdomain":
        hp = f"nx.test:{servers.origin.port}"
    else:
        assert servers.blackhole.verify(), "the black hole accepts connections on this kernel"
        hp = f"127.0.0.1:{servers.blackhole.port}"
    c = HttpConn(proxy.http_port, timeout=30)
    if kind == "connect":
        c.send(http_request("CONNECT", hp, host_header=hp, auth=("alice", PASSWORDS["alice"])))
    else:
        c.send(http_request("GET", f"http://{hp}/x", host_header=hp,
                            auth=("alice", PASSWORDS["alice"])))
    r = c.read_response("GET")
    assert r.status == want, f"{kind} {case}: {r}"
    c.close()


# ---------------------------------------------------------------------------------------------
# Protocol errors
@pytest.mark.uringproxy_only
def test_socks5_unknown_command(proxy, servers):
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"],
                    cmd=0x09)
    assert r.rep == 0x07, r
    assert_closed(r.sock, "cmd 0x09")


@pytest.mark.uringproxy_only
def test_socks5_unknown_atyp(proxy, servers):
    s = connect(proxy.socks_port)
    s.sendall(socks5_greeting((0x02,)))
    assert recv_exact(s, 2) == b"\x05\x02"
    s.sendall(socks5_auth("alice", PASSWORDS["alice"]))
    assert recv_exact(s, 2) == b"\x01\x00"
    s.sendall(b"\x05\x01\x00\x05" + b"\x7f\x00\x00\x01" + b"\x00\x50")
    rep, _, _ = read_socks5_reply(s)
    assert rep == 0x08
    assert_closed(s, "atyp 0x05")


@pytest.mark.uringproxy_only  # tinyproxy asks for credentials first
@pytest.mark.parametrize("line", [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n",
                                  b"GET http://x/ HTTP/1.1 extra\r\nHost: x\r\n\r\n",
                                  b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"])
def test_http_malformed_request_400(proxy, line):
    c = HttpConn(proxy.http_port)
    c.send(line)
    r = c.read_response()
    assert r.status == 400, f"{line!r}: {r}"
    c.close()


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("kind", ["connect", "forward"])
def test_http_oversized_header_431(proxy, servers, kind):
    hp = f"127.0.0.1:{servers.origin.port}"
    big = [("X-Filler", "a" * 17000)]
    if kind == "connect":
        req = http_request("CONNECT", hp, host_header=hp, headers=big,
                           auth=("alice", PASSWORDS["alice"]))
    else:
        req = http_request("GET", f"http://{hp}/bytes/1", host_header=hp, headers=big,
                           auth=("alice", PASSWORDS["alice"]))
    assert len(req) > 16 * 1024
    c = HttpConn(proxy.http_port)
    try:
        c.send(req)
    except (BrokenPipeError, ConnectionResetError):
        pass  # it may answer and close before reading all; the answer must still be readable
    r = c.read_response()
    assert r.status == 431, r
    c.close()


@pytest.mark.uringproxy_only
def test_http_many_headers_431(proxy, servers):
    """Many small header lines adding up past the limit."""
    hp = f"127.0.0.1:{servers.origin.port}"
    hdrs = [(f"X-H{i}", "b" * 60) for i in range(400)]
    c = HttpConn(proxy.http_port)
    try:
        c.send(http_request("GET", f"http://{hp}/bytes/1", host_header=hp, headers=hdrs,
                            auth=("alice", PASSWORDS["alice"])))
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = c.read_response()
    assert r.status == 431, r
    c.close()


# ---------------------------------------------------------------------------------------------
# deny_private (the default): loopback targets refused, also after resolution
PRIVATE_TARGETS = ["127.0.0.1", "localhost", "loop.test", "::ffff:127.0.0.1", "::1"]


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("target", PRIVATE_TARGETS)
def test_socks5_deny_private(strict_proxy, servers, target):
    before = servers.echo.accepted
    r = socks5_open(strict_proxy.socks_port, target, servers.echo.port, pw=PASSWORDS["alice"])
    assert r.rep == 0x02, f"{target}: {r}"
    assert_closed(r.sock, target)
    assert servers.echo.accepted == before, f"{target}: the proxy connected to the target anyway"


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("target", PRIVATE_TARGETS)
@pytest.mark.parametrize("kind", ["connect", "forward"])
def test_http_deny_private_403(strict_proxy, servers, target, kind):
    h = f"[{target}]" if ":" in target else target
    port = servers.echo.port if kind == "connect" else servers.origin.port
    hp = f"{h}:{port}"
    before = (servers.echo.accepted, len(servers.origin.requests))
    c = HttpConn(strict_proxy.http_port)
    if kind == "connect":
        c.send(http_request("CONNECT", hp, host_header=hp, auth=("alice", PASSWORDS["alice"])))
    else:
        c.send(http_request("GET", f"http://{hp}/bytes/1", host_header=hp,
                            auth=("alice", PASSWORDS["alice"])))
    r = c.read_response("GET")
    assert r.status == 403, f"{kind} {target}: {r}"
    c.close()
    assert (servers.echo.accepted, len(servers.origin.requests)) == before


@pytest.mark.uringproxy_only
def test_strict_proxy_still_authenticates_first(strict_proxy, servers):
    r = socks5_open(strict_proxy.socks_port, "127.0.0.1", servers.echo.port, user="alice",
                    pw=WRONG_PASSWORD)
    assert r.auth_status == 0x01, r
    r.sock.close()
