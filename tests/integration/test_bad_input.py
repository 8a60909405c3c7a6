"""6. Bad input: each gets a clean close (or the right code), and a normal client keeps being
served after every case."""
import base64
import random
import select
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clients import (HttpConn, assert_served, connect, http_request, recv_all, recv_exact,
                     socks5_auth, socks5_greeting, socks5_open, socks5_request, stream_end)
from harness import PASSWORDS
from servers import ResetServer, det_bytes

HANDSHAKE_S = 2.0  # limits.handshake_timeout_ms in the shared config
CLOSE_BOUND = 20.0  # generous: closed well within this, or it never will be


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


SOCKS_TRUNCATED = [
    b"\x05",
    b"\x05\x02",
    b"\x05\x02\x02",
    b"\x05\x01\x02\x01\x05ali",
    b"\x05\x01\x02" + socks5_auth("alice", PASSWORDS["alice"]) + b"\x05\x01\x00\x01\x7f",
    b"\x05\x01\x02" + socks5_auth("alice", PASSWORDS["alice"]) + b"\x05\x01\x00\x03\x20abc",
]


@pytest.mark.parametrize("data", SOCKS_TRUNCATED, ids=range(len(SOCKS_TRUNCATED)))
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_socks5_truncated_then_close(proxy, servers, data, how):
    s = connect(proxy.socks_port)
    s.sendall(data)
    if how == "rst":
        rst_close(s)
    else:
        s.shutdown(socket.SHUT_WR)
        assert stream_end(s, CLOSE_BOUND) in ("eof", "reset"), "proxy never closed"
        s.close()
    assert_served(proxy, servers, f"after truncated {data!r}")


AUTH = socks5_auth("alice", PASSWORDS["alice"])
SOCKS_MALFORMED = {
    "version-4": b"\x04\x01\x00\x50\x7f\x00\x00\x01alice\x00",
    "zero-methods": b"\x05\x00",
    "auth-version-2": b"\x05\x01\x02\x02\x05alice\x01x",
    "empty-username": b"\x05\x01\x02\x01\x00\x01x",
    "request-version-4": b"\x05\x01\x02" + AUTH + b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
    "rsv-nonzero": b"\x05\x01\x02" + AUTH + b"\x05\x01\x07\x01\x7f\x00\x00\x01\x00\x50",
    "empty-domain": b"\x05\x01\x02" + AUTH + b"\x05\x01\x00\x03\x00\x00\x50",
    "port-zero": b"\x05\x01\x02" + AUTH + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00",
}


@pytest.mark.uringproxy_only  # microsocks leaves such connections open
@pytest.mark.parametrize("case", list(SOCKS_MALFORMED))
def test_socks5_malformed_closed(proxy, servers, case):
    """Whatever the reply (if any), the proxy ends the connection and keeps serving others."""
    s = connect(proxy.socks_port)
    s.sendall(SOCKS_MALFORMED[case])
    got = recv_all(s, timeout=CLOSE_BOUND)  # raises socket.timeout if it stays open
    s.close()
    if len(got) >= 2 and got[:2] == b"\x05\x02" and len(got) >= 4:
        assert got[2:4] != b"\x01\x00" or len(got) < 6 or got[5] != 0, \
            f"{case}: malformed request answered with success: {got!r}"
    assert_served(proxy, servers, f"after malformed SOCKS5 ({case})")


def _raw_auth(user: bytes, pw: bytes) -> bytes:
    return b"\x01" + bytes([len(user)]) + user + bytes([len(pw)]) + pw


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("user,pw", [
    (b"bob", PASSWORDS["bob"].encode() + b"\x00zzz"),   # the right password, then a NUL
    (b"bob", b"\x00" + PASSWORDS["bob"].encode()),
    (b"bob\x00x", PASSWORDS["bob"].encode()),           # a NUL in the username
], ids=["password-then-nul", "nul-then-password", "nul-in-username"])
def test_socks5_nul_in_credentials_refused(proxy, servers, user, pw):
    """RFC 1929 fields are byte strings; a NUL must not cut the password short where it becomes
    a C string (crypt(3)). The login fails with status 0x01, the proxy closes, and keeps
    serving. The correct password still logs in."""
    s = connect(proxy.socks_port)
    s.sendall(socks5_greeting((2,)))
    assert recv_exact(s, 2) == b"\x05\x02"
    s.sendall(_raw_auth(user, pw) + socks5_request("127.0.0.1", servers.echo.port))
    got = recv_exact(s, 2)
    assert got == b"\x01\x01", f"NUL in the credentials: want auth status 0x01, got {got!r}"
    assert stream_end(s, CLOSE_BOUND) in ("eof", "reset"), "proxy kept the refused login open"
    s.close()
    assert_served(proxy, servers, "after a NUL in RFC 1929 credentials")
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, user="bob",
                    pw=PASSWORDS["bob"])
    r.sock.close()
    assert r.auth_status == 0 and r.rep == 0, r


@pytest.mark.uringproxy_only
def test_http_basic_nul_in_password_refused(proxy, servers):
    """The HTTP path refuses the same credential (407), for CONNECT and forwarding."""
    cred = "Basic " + base64.b64encode(b"bob:" + PASSWORDS["bob"].encode() + b"\x00zzz").decode()
    hp = f"127.0.0.1:{servers.echo.port}"
    for req in (f"CONNECT {hp} HTTP/1.1\r\nHost: {hp}\r\n",
                f"GET http://127.0.0.1:{servers.origin.port}/bytes/3 HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{servers.origin.port}\r\n"):
        c = HttpConn(proxy.http_port)
        c.send(f"{req}Proxy-Authorization: {cred}\r\n\r\n".encode())
        r = c.read_response("CONNECT" if req.startswith("CONNECT") else "GET")
        c.close()
        assert r.status == 407, f"{req.split()[0]} with a NUL in the password: {r}"
    assert_served(proxy, servers, "after a NUL in HTTP Basic credentials")


HTTP_TRUNCATED = [b"CONN", b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n", b"GET http://origin.test/ HTTP/1.1\r\nHo"]


@pytest.mark.parametrize("data", HTTP_TRUNCATED, ids=range(len(HTTP_TRUNCATED)))
def test_http_truncated_then_close(proxy, servers, data):
    s = connect(proxy.http_port)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    assert stream_end(s, CLOSE_BOUND) in ("eof", "reset"), "proxy never closed"
    s.close()
    assert_served(proxy, servers, f"after truncated {data!r}")


@pytest.mark.uringproxy_only  # the peers have no handshake timeout
@pytest.mark.parametrize("seed", range(6))
def test_random_bytes(proxy, servers, seed):
    rnd = random.Random(seed)
    for port in (proxy.socks_port, proxy.http_port):
        s = connect(port)
        try:
            s.sendall(rnd.randbytes(rnd.choice([1, 3, 64, 4096, 40000])))
        except (BrokenPipeError, ConnectionResetError):
            pass
        # Either a reply and a close, or a close at the handshake timeout: never open forever.
        assert stream_end(s, CLOSE_BOUND) in ("eof", "reset")
        s.close()
    assert_served(proxy, servers, f"after random bytes (seed {seed})")


@pytest.mark.uringproxy_only
def test_silent_clients_closed_after_handshake_timeout(proxy, servers):
    t0 = time.monotonic()
    socks = [connect(proxy.socks_port) for _ in range(10)] + \
            [connect(proxy.http_port) for _ in range(10)]
    # Others are served while the silent ones wait.
    assert_served(proxy, servers, "while 20 silent clients are connected")
    with ThreadPoolExecutor(len(socks)) as ex:
        ends = list(ex.map(lambda s: (stream_end(s, CLOSE_BOUND), time.monotonic()), socks))
    for s in socks:
        s.close()
    assert all(e == "eof" or e == "reset" for e, _ in ends), \
        f"silent clients not closed within {CLOSE_BOUND}s: {[e for e, _ in ends]}"
    earliest = min(t for _, t in ends) - t0
    assert earliest >= HANDSHAKE_S * 0.5, f"closed after {earliest:.2f}s, before the timeout"
    assert_served(proxy, servers, "after silent clients")


def slowloris(port, data, interval=1.0, bound=CLOSE_BOUND):
    """Send one byte per interval, reading whatever comes back; returns (how, elapsed, sent)."""
    s = connect(port)
    t0 = time.monotonic()
    sent = 0
    try:
        while time.monotonic() - t0 < bound:
            r, _, _ = select.select([s], [], [], interval)
            if r:
                try:
                    d = s.recv(4096)
                except ConnectionResetError:
                    return "reset", time.monotonic() - t0, sent
                if not d:
                    return "eof", time.monotonic() - t0, sent
                continue
            if sent < len(data):
                try:
                    s.send(data[sent:sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return "reset", time.monotonic() - t0, sent
                sent += 1
        return "open", time.monotonic() - t0, sent
    finally:
        s.close()


@pytest.mark.uringproxy_only
def test_slowloris_closed_by_handshake_timeout(proxy, servers):
    socks_data = (socks5_greeting((2,)) + socks5_auth("alice", PASSWORDS["alice"])
                  + socks5_request("127.0.0.1", servers.echo.port))
    hp = f"127.0.0.1:{servers.echo.port}"
    http_data = http_request("CONNECT", hp, host_header=hp, auth=("alice", PASSWORDS["alice"]))
    assert len(socks_data) > CLOSE_BOUND and len(http_data) > CLOSE_BOUND
    with ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(slowloris, proxy.socks_port, socks_data),
                ex.submit(slowloris, proxy.http_port, http_data),
                ex.submit(slowloris, proxy.socks_port, socks_data, 0.3),
                ex.submit(slowloris, proxy.http_port, http_data, 0.3)]
        assert_served(proxy, servers, "during slowloris")
        results = [f.result() for f in futs]
    for how, elapsed, sent in results:
        assert how in ("eof", "reset"), f"slowloris client still open after {elapsed:.1f}s " \
            f"({sent} bytes sent): the handshake timeout must bound the whole handshake"
    assert_served(proxy, servers, "after slowloris")


@pytest.mark.parametrize("via", ["socks5", "http-connect"])
def test_target_resets_mid_stream(proxy, servers, via):
    if via == "socks5":
        r = socks5_open(proxy.socks_port, "127.0.0.1", servers.reset.port, pw=PASSWORDS["alice"])
        assert r.rep == 0, r
        s, pre = r.sock, b""
    else:
        from clients import http_connect
        c, resp = http_connect(proxy.http_port, "127.0.0.1", servers.reset.port,
                               pw=PASSWORDS["alice"])
        assert resp.status == 200, resp
        s, pre = c.s, bytes(c.buf)
    got = pre + recv_all(s, timeout=CLOSE_BOUND)  # ends on EOF or reset, raises on timeout
    assert len(got) <= ResetServer.K
    assert got == det_bytes(len(got)), "bytes before the reset were corrupted"
    s.close()
    assert_served(proxy, servers, "after a target reset")


@pytest.mark.parametrize("via", ["socks5", "http-connect"])
def test_client_resets_mid_stream(proxy, servers, via):
    for _ in range(5):
        if via == "socks5":
            r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port,
                            pw=PASSWORDS["alice"])
            s = r.sock
        else:
            from clients import http_connect
            c, _ = http_connect(proxy.http_port, "127.0.0.1", servers.echo.port,
                                pw=PASSWORDS["alice"])
            s = c.s
        s.sendall(b"x" * 500000)  # the echo is writing back while we reset
        rst_close(s)
    assert_served(proxy, servers, "after client resets")


@pytest.mark.uringproxy_only
def test_client_gone_during_connect_dns_and_auth(proxy, servers):
    """Close the client while the proxy waits on a connect (black hole), a slow DNS answer,
    or a password hash; the late completion must find nothing to use (ASan watches)."""
    for _ in range(3):
        s = connect(proxy.socks_port)
        s.sendall(socks5_greeting((2,)) + socks5_auth("alice", PASSWORDS["alice"])
                  + socks5_request("127.0.0.1", servers.blackhole.port))
        time.sleep(0.05)  # not a timing assertion: lets the proxy reach the connect
        rst_close(s)
        s = connect(proxy.http_port)
        s.sendall(http_request("CONNECT", f"slow{_}.test:{servers.echo.port}",
                               host_header="x", auth=("alice", PASSWORDS["alice"])))
        time.sleep(0.05)
        s.close()
        for user in ("bob", "carol"):  # yescrypt and bcrypt take a while to verify
            s = connect(proxy.socks_port)
            s.sendall(socks5_greeting((2,)) + socks5_auth(user, PASSWORDS[user]))
            rst_close(s)
    time.sleep(1.5)  # let the slow DNS answers and the connect timeouts land; then check
    assert_served(proxy, servers, "after clients vanished mid-handshake")


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("cl", ["-1", "abc", "1, 2", "99999999999999999999999"])
def test_http_bad_content_length_400(proxy, servers, cl):
    hp = f"127.0.0.1:{servers.origin.port}"
    c = HttpConn(proxy.http_port)
    c.send(http_request("POST", f"http://{hp}/echo", host_header=hp,
                        headers=[("Content-Length", cl)], auth=("alice", PASSWORDS["alice"])))
    r = c.read_response()
    assert r.status == 400, f"Content-Length {cl!r}: {r}"
    c.close()
    assert_served(proxy, servers)


@pytest.mark.uringproxy_only
def test_http_bad_chunk_size_ends_connection(proxy, servers):
    hp = f"127.0.0.1:{servers.origin.port}"
    c = HttpConn(proxy.http_port)
    c.send(http_request("POST", f"http://{hp}/echo", host_header=hp,
                        headers=[("Transfer-Encoding", "chunked")],
                        auth=("alice", PASSWORDS["alice"])) + b"zz\r\nhello\r\n0\r\n\r\n")
    # Whether a 400 comes first or not, the connection must end rather than hang.
    assert stream_end(c.s, CLOSE_BOUND) in ("eof", "reset")
    c.close()
    assert_served(proxy, servers)


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("case", ["empty-username", "auth-version-2"])
def test_reply_of_closed_client_never_reaches_next_client(fresh_proxy, servers, case):
    """A client pipelines a good greeting and a malformed auth; the proxy refuses and closes it.
    The method-selection reply owed to that client must not end up on the next connection
    (which can get the same fd number): each next client must see exactly 05 02, then 01 00.
    (Own instance: 250 refusals must not count against the shared one's per-address limits.)"""
    proxy = fresh_proxy()
    bad = []
    for i in range(250):
        s = connect(proxy.socks_port)
        s.sendall(SOCKS_MALFORMED[case])
        recv_all(s, timeout=CLOSE_BOUND)
        s.close()
        s = connect(proxy.socks_port)
        s.settimeout(CLOSE_BOUND)
        s.sendall(socks5_greeting((2,)))
        a = s.recv(16)
        if a == b"\x05\x02":
            s.sendall(socks5_auth("alice", PASSWORDS["alice"]))
            b = s.recv(16)
        else:
            b = b""
        s.close()
        if (a, b) != (b"\x05\x02", b"\x01\x00"):
            bad.append((i, a, b))
    assert not bad, f"{len(bad)}/250 next clients got foreign bytes (method reply, auth reply): " \
        f"{bad[:5]}"
