"""Idle timeout on established tunnels, and listeners on IPv6 loopback."""
import socket
import time

import pytest

from clients import echo_roundtrip, http_connect, socks5_open, stream_end
from harness import PASSWORDS
from servers import ipv6_loopback_available

pytestmark = pytest.mark.uringproxy_only


def test_idle_tunnel_closed_active_tunnel_kept(fresh_proxy, servers):
    p = fresh_proxy({"limits": {"idle_timeout_ms": 1500}})
    idle = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    busy = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    c, resp = http_connect(p.http_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert idle.rep == 0 and busy.rep == 0 and resp.status == 200
    t0 = time.monotonic()
    # Keep `busy` active (a round trip every 0.3 s) while the others sit idle.
    closed = {}
    while time.monotonic() - t0 < 20 and len(closed) < 2:
        echo_roundtrip(busy.sock, b"keepalive")
        for name, s in (("socks", idle.sock), ("http", c.s)):
            if name not in closed and stream_end(s, 0.15) != "timeout":
                closed[name] = time.monotonic() - t0
        time.sleep(0.15)
    assert set(closed) == {"socks", "http"}, f"idle tunnels not closed within 20 s: {closed}"
    assert min(closed.values()) >= 0.75, f"closed too early: {closed}"
    echo_roundtrip(busy.sock, b"still alive after the idle ones were closed")
    for s in (idle.sock, busy.sock, c.s):
        s.close()


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) on this host")
def test_listeners_on_ipv6_loopback(fresh_proxy, servers):
    p = fresh_proxy(start=False)
    p.config["listeners"] = [
        {"name": "socks6", "protocol": "socks5", "listen": f"[::1]:{p.socks_port}"},
        {"name": "http6", "protocol": "http", "listen": f"[::1]:{p.http_port}"},
    ]
    p.start()
    s = socket.create_connection(("::1", p.socks_port), timeout=20)
    s.sendall(b"\x05\x01\x02" + b"\x01\x05alice" + bytes([len(PASSWORDS["alice"])])
              + PASSWORDS["alice"].encode() + b"\x05\x01\x00\x01\x7f\x00\x00\x01"
              + servers.echo.port.to_bytes(2, "big") + b"ping6")
    got = b""
    s.settimeout(20)
    while not got.endswith(b"ping6"):
        d = s.recv(100)
        assert d, f"closed after {got!r}"
        got += d
    assert got[:4] == b"\x05\x02\x01\x00" and got[4:6] == b"\x05\x00", got
    s.close()
    h = socket.create_connection(("::1", p.http_port), timeout=20)
    h.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic %s\r\n\r\n"
              % (servers.echo.port, __import__("base64").b64encode(
                  b"alice:" + PASSWORDS["alice"].encode())))
    h.settimeout(20)
    assert h.recv(100).startswith(b"HTTP/1.1 200"), "CONNECT over the IPv6 listener failed"
    h.close()
