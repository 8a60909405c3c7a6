"""10. Graceful stop: SIGTERM closes the listeners, open tunnels keep working until they end or
shutdown_grace_ms passes, then exit 0."""
import os
import signal
import socket
import time

import pytest

from clients import echo_roundtrip, http_connect, socks5_open, stream_end
from harness import PASSWORDS

pytestmark = pytest.mark.uringproxy_only


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def wait_listeners_closed(p, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if refused(p.socks_port) and refused(p.http_port):
            return True
        time.sleep(0.1)
    return False


def open_tunnels(p, servers):
    r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert r.rep == 0, r
    echo_roundtrip(r.sock, b"before")
    c, resp = http_connect(p.http_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert resp.status == 200, resp
    c.send(b"before")
    assert c.read_n(6) == b"before"
    return r.sock, c


def test_sigterm_drains_open_tunnels_then_exits_0(fresh_proxy, servers):
    p = fresh_proxy({"shutdown_grace_ms": 60000})
    s, c = open_tunnels(p, servers)
    p.signal(signal.SIGTERM)
    assert wait_listeners_closed(p), "listeners still accept connections after SIGTERM"
    assert p.alive(), "exited at SIGTERM although tunnels were open and the grace is 60 s"
    payload = os.urandom(200000)
    echo_roundtrip(s, payload)  # the open tunnels keep working
    c.send(payload)
    assert c.read_n(len(payload)) == payload
    s.close()
    c.close()
    rc = p.wait_exit(20)  # both tunnels ended: no need to wait out the 60 s grace
    assert rc == 0, f"exit code {rc} (None = still running 20 s after the last tunnel ended)"


def test_sigterm_grace_expires_then_exits_0(fresh_proxy, servers):
    p = fresh_proxy({"shutdown_grace_ms": 2000})
    s, c = open_tunnels(p, servers)
    p.signal(signal.SIGTERM)
    assert wait_listeners_closed(p), "listeners still accept connections after SIGTERM"
    echo_roundtrip(s, b"during grace")
    rc = p.wait_exit(20)
    assert rc == 0, f"exit code {rc} (None = still running 20 s after SIGTERM, grace 2 s)"
    assert stream_end(s, 10) in ("eof", "reset")
    assert stream_end(c.s, 10) in ("eof", "reset")
    s.close()
    c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_idle_stop_exits_0(fresh_proxy, servers, sig):
    p = fresh_proxy()
    s, c = open_tunnels(p, servers)
    s.close()
    c.close()
    p.signal(sig)
    rc = p.wait_exit(20)
    assert rc == 0, f"exit code {rc} after {sig.name}"


def test_sigterm_closes_clients_in_handshake(fresh_proxy, servers):
    """A client stuck mid-handshake does not hold the process past the grace period."""
    p = fresh_proxy({"shutdown_grace_ms": 1000, "limits": {"handshake_timeout_ms": 60000}})
    s = socket.create_connection(("127.0.0.1", p.socks_port), timeout=10)
    s.sendall(b"\x05")
    p.signal(signal.SIGTERM)
    rc = p.wait_exit(20)
    assert rc == 0, f"exit code {rc}"
    s.close()


@pytest.mark.parametrize("hold", [True, False], ids=["draining", "idle"])
def test_connect_after_stop_began_is_refused(fresh_proxy, servers, hold):
    """Once the stop has begun, a new client gets ECONNREFUSED on every worker's listener: not a
    completed handshake and then a reset (the listeners used to stay open until the ring's
    asynchronous teardown let go of them, a few ms later, also after an idle proxy exited)."""
    p = fresh_proxy({"shutdown_grace_ms": 60000})
    held = open_tunnels(p, servers) if hold else None
    start = p.mark()
    p.signal(signal.SIGTERM)
    line = p.err.wait_for(lambda ln: "listeners closed" in ln, 20, start)
    assert line, "no 'listeners closed' line within 20 s of SIGTERM"
    # Many tries: SO_REUSEPORT spreads them over every worker's socket.
    accepted = []
    for i in range(100):
        for port in (p.socks_port, p.http_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                accepted.append((i, port))
            except ConnectionRefusedError:
                pass
    assert not accepted, f"accepted after the listeners closed: {accepted[:5]} ..."
    if hold:
        s, c = held
        echo_roundtrip(s, b"the open tunnel drains")
        s.close()
        c.close()
    rc = p.wait_exit(20)
    assert rc == 0, f"exit code {rc}"
    assert refused(p.socks_port) and refused(p.http_port)
