"""Shared pieces for the limits / ACL / brute-force / slowloris tests (issue 5, docs/configuration.md, 2.2,
2.5): users with sha512-crypt hashes and per-user fields, private proxy instances with extra
config, /metrics scraping, SOCKS5 and HTTP logins from a chosen source address, and a byte
source and byte sink for rate measurements."""
from __future__ import annotations

import ipaddress
import re
import select
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import pytest

from clients import (TIMEOUT, HttpConn, http_request, read_socks5_reply, recv_exact,
                     socks5_auth, socks5_greeting, socks5_request)
from servers import _TcpServer, free_port, wait_until

# Distinctive plain passwords: a leak into the proxy's output cannot be a coincidence.
def password(user: str) -> str:
    return f"{user}-pw-Lm4x9"


_HASH_CACHE: dict = {}


def sha512_hash(pw: str) -> str:
    h = _HASH_CACHE.get(pw)
    if h is None:
        h = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw.encode(),
                           capture_output=True, check=True).stdout.decode().strip()
        assert h.startswith("$6$"), h
        _HASH_CACHE[pw] = h
    return h


def users(*specs):
    """users("alice", ("slow", {"bandwidth_bps": 8000000}), ...) -> users.json document; every
    user gets password(name) as a sha512-crypt hash."""
    out = []
    for s in specs:
        name, extra = (s, {}) if isinstance(s, str) else s
        u = {"username": name, "password": sha512_hash(password(name))}
        u.update(extra)
        out.append(u)
    return {"users": out}


def my_secrets(doc):
    return [password(u["username"]) for u in doc["users"]]


# ---------------------------------------------------------------------------------------------
# Private proxy instances (module- or function-scoped), checked like the shared ones.
def start_proxy(instances, overrides, users_doc, metrics=False, name="limits"):
    over = dict(overrides or {})
    port = None
    if metrics:
        port = free_port()
        over["metrics"] = {"listen": f"127.0.0.1:{port}"}
    p = instances.make(name, over, users_doc)
    p.metrics_port = port
    p.my_users = users_doc
    p.start()
    return p


def check_after_test(p, start):
    """What conftest._watched checks, plus our own passwords never in the output."""
    if not p.alive() and not p.stopped_on_purpose:
        p.stop()
        pytest.fail(f"{p.name} died during the test (rc={p.proc.returncode}); stderr tail:\n"
                    + "\n".join(p.stderr_lines()[-40:]), pytrace=False)
    msgs = p.problems(start)
    text = p.output_text(start)
    leaked = [s for s in my_secrets(p.my_users) if s in text]
    if leaked:
        msgs.append(f"{p.name} logged secrets: {leaked}")
    if msgs:
        pytest.fail("\n\n".join(msgs), pytrace=False)


def stop_proxy(p):
    if p.proc is None or p.stopped_on_purpose:
        return
    was_alive = p.alive()
    rc = p.stop()
    if was_alive and rc != 0:
        pytest.fail(f"{p.name}: exit code {rc} after SIGTERM (want 0); stderr tail:\n"
                    + "\n".join(p.stderr_lines()[-30:]), pytrace=False)


def proxy_fixture(overrides_fn, users_fn, metrics=False, scope="module"):
    """A pytest fixture yielding one private instance for the whole module; after every test
    that uses it the instance must be alive with clean output."""

    @pytest.fixture(scope=scope)
    def _instance(instances, servers):
        p = start_proxy(instances, overrides_fn(servers), users_fn(), metrics=metrics)
        yield p
        stop_proxy(p)

    return _instance


def watched(p):
    start = p.mark()
    yield p
    check_after_test(p, start)


# ---------------------------------------------------------------------------------------------
def scrape(port) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for ln in text.splitlines():
        if ln.startswith("#") or not ln.strip():
            continue
        m = re.match(r"^(\S+)\s+(\S+)$", ln)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def metric_sum(port, name) -> float | None:
    """Sum of every series of `name` (with or without labels); None when it is absent."""
    vals = [v for k, v in scrape(port).items() if k == name or k.startswith(name + "{")]
    return sum(vals) if vals else None


# ---------------------------------------------------------------------------------------------
def connect_from(port, src=None, timeout=TIMEOUT) -> socket.socket:
    """TCP connect to 127.0.0.1:port, optionally from a chosen loopback source address."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Socks:
    """Outcome of one SOCKS5 attempt: auth_status (None if not reached), rep, the socket."""

    def __init__(self, sock):
        self.sock = sock
        self.method = None
        self.auth_status = None
        self.rep = None
        self.closed_early = False

    def __repr__(self):
        return (f"Socks(method={self.method}, auth={self.auth_status}, rep={self.rep}, "
                f"closed_early={self.closed_early})")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def socks5(port, host, tport, user, pw, src=None, timeout=TIMEOUT) -> Socks:
    """A full SOCKS5 CONNECT with user/password auth. Stops at the first refusal. A proxy that
    closes the connection instead of answering gives closed_early=True."""
    s = connect_from(port, src, timeout)
    r = Socks(s)
    try:
        s.sendall(socks5_greeting((0x02,)))
        ver, r.method = recv_exact(s, 2)
        assert ver == 5, f"bad version {ver}"
        if r.method != 0x02:
            return r
        s.sendall(socks5_auth(user, pw))
        _, r.auth_status = recv_exact(s, 2)
        if r.auth_status != 0:
            return r
        s.sendall(socks5_request(host, tport))
        r.rep, _, _ = read_socks5_reply(s)
    except (EOFError, ConnectionResetError, BrokenPipeError):
        r.closed_early = True
    return r


def http_connect_as(port, host, tport, user, pw, src=None, timeout=TIMEOUT):
    """HTTP CONNECT; returns (HttpConn, status or None if the proxy closed without a reply)."""
    hp = f"[{host}]:{tport}" if ":" in host else f"{host}:{tport}"
    c = HttpConn(port, sock=connect_from(port, src, timeout), timeout=timeout)
    try:
        c.send(http_request("CONNECT", hp, host_header=hp, auth=(user, pw)))
        r = c.read_response("CONNECT")
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return c, None
    return c, r.status


def http_get_as(port, url, host_header, user, pw, timeout=TIMEOUT):
    """One absolute-URI request; returns (HttpConn, status or None)."""
    c = HttpConn(port, timeout=timeout)
    try:
        c.send(http_request("GET", url, host_header=host_header, auth=(user, pw)))
        r = c.read_response()
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return c, None
    return c, r.status


def hostport(host, port):
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def echo_ok(sock, n=2048) -> bool:
    data = bytes(range(256)) * (n // 256)
    sock.sendall(data)
    return recv_exact(sock, len(data)) == data


# ---------------------------------------------------------------------------------------------
class CountingEcho(_TcpServer):
    """An echo server that counts the connections it accepted (to prove a refused target was
    never contacted)."""

    def handle(self, c):
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)


class SourceServer(_TcpServer):
    """Sends bytes as fast as the peer takes them, until the peer goes away."""

    CHUNK = b"\x5a" * 262144

    def handle(self, c):
        c.settimeout(60)
        while True:
            c.sendall(self.CHUNK)


class SinkServer(_TcpServer):
    """Reads and counts bytes (all connections together)."""

    def __init__(self):
        self.total = 0
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, c):
        c.settimeout(60)
        while True:
            d = c.recv(262144)
            if not d:
                break
            with self.lock:
                self.total += len(d)

    def count(self):
        with self.lock:
            return self.total


def download_for(sock, seconds, prefix=b"") -> tuple[int, float]:
    """Read for `seconds`; returns (bytes, elapsed)."""
    t0 = time.monotonic()
    n = len(prefix)
    sock.setblocking(False)
    end = t0 + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            d = sock.recv(262144)
        except BlockingIOError:
            continue
        if not d:
            raise AssertionError(f"tunnel closed after {n} bytes")
        n += len(d)
    return n, time.monotonic() - t0


def upload_for(sock, seconds, stop_evt=None):
    """Send as fast as the tunnel takes it for `seconds` (from a thread)."""
    chunk = b"\xa5" * 65536
    sock.setblocking(False)
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end:
        _, w, _ = select.select([], [sock], [], max(0.0, end - time.monotonic()))
        if not w:
            continue
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            continue
    return sent


def raise_nofile(want: int) -> int:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, want)) if hard != resource.RLIM_INFINITY else max(soft, want)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def never_contacted(server, before, settle=0.3):
    """True when `server` accepted no new connection (after a short settle for its thread)."""
    time.sleep(settle)
    return server.accepted == before


__all__ = ["password", "users", "start_proxy", "stop_proxy", "proxy_fixture", "watched",
           "scrape", "metric_sum", "connect_from", "socks5", "http_connect_as", "http_get_as",
           "hostport", "echo_ok", "CountingEcho", "SourceServer", "SinkServer", "download_for",
           "upload_for", "raise_nofile", "linger0", "never_contacted", "wait_until",
           "check_after_test"]
