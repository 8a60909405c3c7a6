"""One upstream handshake (docs/wire.md#through-an-upstream): the health probe (and `proxy test`)
and the dialer speak the same SOCKS5 client handshake, so they judge an upstream alike. Before
they shared one, the probe read exactly two bytes per answer and did not check the RFC 1929
version: an upstream answering `05 00` to the authentication, or a stray byte behind its method
choice, passed every probe while every connection through it failed, and it flapped between
down (a dial) and up (the next probe)."""
import socket
import struct
import sys
import threading

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U  # noqa: E402
from ctl_helpers import run_ctl  # noqa: E402
from servers import _TcpServer, wait_until  # noqa: E402
from upstream_conftest import pw, socks, up_config, user  # noqa: E402

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only


class QuirkySocks5(_TcpServer):
    """A SOCKS5 upstream that relays CONNECTs, with a quirk switched on at run time:
    "auth_v5" answers RFC 1929 with version 5 (`05 00`, as some servers do), "greeting_extra"
    sends a stray byte behind its method choice. With user set it demands RFC 1929."""

    def __init__(self, user=None, password=None):
        self.user, self.password = user, password
        self.quirk = None
        self.lock = threading.Lock()
        self.connects = 0
        self.greetings = 0  # every connection: probes, `proxy test` and tunnels
        super().__init__()

    @staticmethod
    def _exact(c, n):
        b = b""
        while len(b) < n:
            d = c.recv(n - len(b))
            if not d:
                raise EOFError
            b += d
        return b

    def handle(self, c):
        try:
            self._handle(c)
        except EOFError:  # probes stop after the authentication
            pass

    def _handle(self, c):
        quirk = self.quirk
        _ver, nm = self._exact(c, 2)
        self._exact(c, nm)
        with self.lock:
            self.greetings += 1
        method = 0x02 if self.user else 0x00
        c.sendall(bytes([5, method]) + (b"\x00" if quirk == "greeting_extra" else b""))
        if method == 0x02:
            _v, ul = self._exact(c, 2)
            name = self._exact(c, ul).decode()
            password = self._exact(c, self._exact(c, 1)[0]).decode()
            ok = (name, password) == (self.user, self.password)
            c.sendall(bytes([5 if quirk == "auth_v5" else 1, 0 if ok else 1]))
            if not ok:
                return
        _ver, _cmd, _rsv, atyp = self._exact(c, 4)
        assert atyp == 1, atyp  # the tests ask for 127.0.0.1
        host = socket.inet_ntoa(self._exact(c, 4))
        port = struct.unpack("!H", self._exact(c, 2))[0]
        with self.lock:
            self.connects += 1
        up = socket.create_connection((host, port), timeout=10)
        c.sendall(b"\x05\x00\x00\x01" + bytes(6))
        U._relay(c, up)


QUIRKS = {
    # quirk: (the upstream demands RFC 1929, the reason both must give)
    "auth_v5": (True, "sent a malformed RFC 1929 reply (version 5, not 1)"),
    "greeting_extra": (False, "sent more than a SOCKS5 method choice"),
}


@pytest.mark.parametrize("quirk", list(QUIRKS))
def test_probe_and_dialer_judge_a_quirky_upstream_alike(up_factory, ustack, quirk):
    """Well-behaved, the upstream passes `proxy test` and carries a tunnel. With the quirk on,
    a connection through it fails and marks it down with reason R; `proxy test` then fails
    with the same R, and the upstream stays down (the probe no longer brings it back)."""
    demands_auth, reason = QUIRKS[quirk]
    server = QuirkySocks5(U.SOCKS_USER, U.SOCKS_PASSWORD) if demands_auth else QuirkySocks5()
    try:
        proxies = [socks("quirky", server.port, creds=demands_auth)]
        users = {"users": [user("qu", "quirky")]}
        # One probe at start, then re-probes only while down (backoff 200 ms, doubling).
        cfg = up_config(ustack, health_check={"interval_ms": 600000, "timeout_ms": 3000},
                        upstream={"connect_timeout_ms": 3000, "attempts": 1, "backoff_ms": 200})
        p = up_factory(f"up-quirk-{quirk}", cfg, users, proxies)
        sock = str(p.workdir / "run" / "control.sock")

        def ctl(*args):
            return run_ctl(["--socket", sock] + list(args))

        def listed_up():
            r = run_ctl(["--socket", sock, "--json", "proxy", "list"])
            return [x for x in r.json()["proxies"] if x["id"] == "quirky"][0]["up"]

        # Well-behaved: both accept it.
        r = ctl("proxy", "test", "quirky")
        assert r.rc == 0 and r.out.strip() == "✓ Proxy quirky is up", r
        assert wait_until(listed_up, 20), "the start-up probe did not find it up"
        # The start-up probe must be behind us (on a busy machine it can come late): had it
        # seen the quirk, the health check, not the dialer, would mark the upstream down.
        assert wait_until(lambda: server.greetings >= 2, 20), "no start-up probe arrived"
        got = U.socks_try(p, "qu", pw("qu"), "127.0.0.1", ustack.target.port)
        assert got == ("ok", U.DIRECT), got

        server.quirk = quirk
        start = p.mark()
        got = U.socks_try(p, "qu", pw("qu"), "127.0.0.1", ustack.target.port)
        assert got == ("rep", 0x01), f"the dialer accepted the {quirk} upstream: {got}"
        line = p.err.wait_for(lambda ln: "upstream quirky (" in ln and "marked down" in ln,
                              20, start)
        assert line is not None, "no 'marked down' line from the dialer:\n" + \
            "\n".join(p.stderr_lines(start)[-20:])

        r = ctl("proxy", "test", "quirky")
        assert r.rc == 1, f"the probe passes an upstream the dialer refuses ({line}): {r}"
        assert r.err.strip() == f"error: probe failed: {reason}", r
        assert line.endswith("marked down: " + reason), line
        assert not listed_up(), "the health check brought back an upstream the dialer refuses"
        assert not any("quirky is up again" in ln for ln in p.stderr_lines(start)), \
            "\n".join(p.stderr_lines(start))
        assert server.connects == 1, "a CONNECT reached the quirky upstream"
    finally:
        server.close()
