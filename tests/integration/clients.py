"""Raw-socket clients for SOCKS5 and HTTP proxies, a curl wrapper, and a liveness probe."""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import select
import socket
import struct
import subprocess
import threading
import time

TIMEOUT = 20.0  # generous bound for any single network step on a busy 2-core machine


# ---------------------------------------------------------------------------------------------
def connect(port, host="127.0.0.1", timeout=TIMEOUT) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes: {bytes(buf)!r}")
        buf += d
    return bytes(buf)


def recv_all(s: socket.socket, timeout=TIMEOUT, limit=1 << 30) -> bytes:
    """Read until EOF (or a reset, which ends the stream too). Raises socket.timeout."""
    s.settimeout(timeout)
    buf = bytearray()
    while len(buf) < limit:
        try:
            d = s.recv(262144)
        except ConnectionResetError:
            break
        if not d:
            break
        buf += d
    return bytes(buf)


def stream_end(s: socket.socket, timeout=TIMEOUT) -> str:
    """Wait until the peer ends the stream, discarding data. Returns 'eof', 'reset' or
    'timeout'."""
    deadline = time.monotonic() + timeout
    s.setblocking(False)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            r, _, _ = select.select([s], [], [], left)
            if not r:
                continue
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                return "reset"
            except BlockingIOError:
                continue
            if not d:
                return "eof"
    finally:
        s.setblocking(True)


def send_in_background(s: socket.socket, payload: bytes, then_shutdown=False):
    """sendall from a thread, so a large echo cannot deadlock against our own reading."""
    err = []

    def run():
        try:
            s.sendall(payload)
            if then_shutdown:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, err


def echo_roundtrip(s: socket.socket, payload: bytes) -> None:
    t, err = send_in_background(s, payload)
    got = recv_exact(s, len(payload))
    t.join(TIMEOUT)
    assert not err, f"send failed: {err}"
    assert got == payload, "echo mismatch"


# ---------------------------------------------------------------------------------------------
# SOCKS5
def socks5_addr(host: str, port: int) -> bytes:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        hb = host.encode()
        return b"\x03" + bytes([len(hb)]) + hb + struct.pack("!H", port)
    if ip.version == 4:
        return b"\x01" + ip.packed + struct.pack("!H", port)
    return b"\x04" + ip.packed + struct.pack("!H", port)


def socks5_greeting(methods=(0x02,)) -> bytes:
    return bytes([5, len(methods)]) + bytes(methods)


def socks5_auth(user: str, pw: str) -> bytes:
    u, p = user.encode(), pw.encode()
    return b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p


def socks5_request(host: str, port: int, cmd=1) -> bytes:
    return bytes([5, cmd, 0]) + socks5_addr(host, port)


def read_socks5_reply(s: socket.socket):
    """Returns (rep, bound_host, bound_port). Raises EOFError on a short reply."""
    head = recv_exact(s, 4)
    assert head[0] == 5, f"bad reply version {head!r}"
    atyp = head[3]
    if atyp == 1:
        addr = socket.inet_ntop(socket.AF_INET, recv_exact(s, 4))
    elif atyp == 4:
        addr = socket.inet_ntop(socket.AF_INET6, recv_exact(s, 16))
    elif atyp == 3:
        addr = recv_exact(s, recv_exact(s, 1)[0]).decode()
    else:
        raise AssertionError(f"bad reply atyp {atyp}: {head!r}")
    port = struct.unpack("!H", recv_exact(s, 2))[0]
    return head[1], addr, port


class Socks5Result:
    def __init__(self, sock, method=None, auth_status=None, rep=None):
        self.sock = sock
        self.method = method
        self.auth_status = auth_status
        self.rep = rep

    def __repr__(self):
        return f"Socks5Result(method={self.method}, auth_status={self.auth_status}, rep={self.rep})"


def socks5_open(proxy_port, host, port, user="alice", pw=None, methods=None, cmd=1,
                pipelined=False, payload=b"", timeout=TIMEOUT) -> Socks5Result:
    """Run a SOCKS5 handshake. Stops at the first refusal and reports where it stopped.
    With pipelined=True every byte (greeting, auth, request, payload) goes in one write."""
    if methods is None:
        methods = (0x02,) if user is not None else (0x00,)
    s = connect(proxy_port, timeout=timeout)
    greet = socks5_greeting(methods)
    auth = socks5_auth(user, pw) if user is not None else b""
    req = socks5_request(host, port, cmd)
    if pipelined:
        s.sendall(greet + auth + req + payload)
    else:
        s.sendall(greet)
    res = Socks5Result(s)
    ver, res.method = recv_exact(s, 2)
    assert ver == 5, f"bad method-selection version {ver}"
    if res.method == 0xFF:
        return res
    if res.method == 0x02:
        if not pipelined:
            s.sendall(auth)
        aver, res.auth_status = recv_exact(s, 2)
        assert aver == 1, f"bad auth version {aver}"
        if res.auth_status != 0:
            return res
    if not pipelined:
        s.sendall(req)
    res.rep, _, _ = read_socks5_reply(s)
    if res.rep == 0 and payload and not pipelined:
        s.sendall(payload)
    return res


def socks5_tunnel_opens(proxy_port, target_port, user, pw) -> bool:
    """Whether a SOCKS5 login and CONNECT to 127.0.0.1:target_port succeed. A login in flight
    when an edit revokes the user may be cut before its reply: that is a refusal too."""
    try:
        r = socks5_open(proxy_port, "127.0.0.1", target_port, user=user, pw=pw)
    except (EOFError, ConnectionResetError):
        return False
    r.sock.close()
    return (r.auth_status, r.rep) == (0, 0)


# ---------------------------------------------------------------------------------------------
# HTTP
def basic(user, pw) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


class HttpResponse:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.version = version

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<HTTP {self.status} {self.reason} {self.headers} body={len(self.body)}B>"


class HttpConn:
    """A raw HTTP/1.1 client connection with its own read buffer."""

    def __init__(self, port, host="127.0.0.1", timeout=TIMEOUT, sock=None):
        self.s = sock or connect(port, host, timeout)
        self.s.settimeout(timeout)
        self.buf = bytearray()

    def close(self):
        self.s.close()

    def send(self, data: bytes):
        self.s.sendall(data)

    def _fill(self):
        d = self.s.recv(262144)
        if not d:
            raise EOFError("connection closed by proxy")
        self.buf += d

    def read_until(self, delim: bytes, limit=1 << 20) -> bytes:
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise AssertionError("header too long")
            self._fill()

    def read_n(self, n) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self) -> bytes:
        try:
            while True:
                self._fill()
        except (EOFError, ConnectionResetError):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_head(self):
        head = self.read_until(b"\r\n\r\n", limit=1 << 20).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        assert parts[0].startswith("HTTP/1."), f"bad status line {lines[0]!r}"
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for ln in lines[1:]:
            if not ln:
                continue
            k, _, v = ln.partition(":")
            headers.append((k.strip(), v.strip()))
        return parts[0], status, reason, headers

    def read_response(self, method="GET", skip_1xx=True) -> HttpResponse:
        while True:
            version, status, reason, headers = self.read_head()
            if 100 <= status < 200 and status != 101 and skip_1xx:
                continue
            break
        r = HttpResponse(status, reason, headers, b"", version)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return r
        if method == "CONNECT" and 200 <= status < 300:
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            body = bytearray()
            while True:
                line = self.read_until(b"\r\n").decode("latin-1")
                size = int(line.split(";")[0].strip(), 16)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self.read_n(size)
                assert self.read_n(2) == b"\r\n", "bad chunk terminator"
            r.body = bytes(body)
        elif r.header("Content-Length") is not None:
            r.body = self.read_n(int(r.header("Content-Length")))
        else:
            r.body = self.read_to_eof()
        return r


def http_request(method, target, host_header=None, headers=(), body=None, chunked_body=None,
                 auth=("alice", None)) -> bytes:
    """Build a request. auth=(user, pw) adds Proxy-Authorization when pw is not None."""
    lines = [f"{method} {target} HTTP/1.1"]
    if host_header is not None:
        lines.append(f"Host: {host_header}")
    if auth and auth[1] is not None:
        lines.append(f"Proxy-Authorization: {basic(*auth)}")
    for k, v in headers:
        lines.append(f"{k}: {v}")
    payload = b""
    if chunked_body is not None:
        lines.append("Transfer-Encoding: chunked")
        for c in chunked_body:
            payload += b"%x\r\n" % len(c) + c + b"\r\n"
        payload += b"0\r\n\r\n"
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def http_connect(proxy_port, host, port, user="alice", pw=None, extra=b"", timeout=TIMEOUT):
    """Send CONNECT (plus `extra` bytes in the same write); returns (HttpConn, HttpResponse)."""
    hp = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    c = HttpConn(proxy_port, timeout=timeout)
    c.send(http_request("CONNECT", hp, host_header=hp, auth=(user, pw)) + extra)
    r = c.read_response("CONNECT")
    return c, r


# ---------------------------------------------------------------------------------------------
def clean_env():
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return env


def curl(args, timeout=120, stdin=None):
    """Run curl; returns CompletedProcess with bytes stdout."""
    cmd = ["curl", "-sS", "--max-time", str(int(timeout)), "--connect-timeout", "20"] + list(args)
    return subprocess.run(cmd, capture_output=True, timeout=timeout + 30, env=clean_env(),
                          input=stdin)


def curl_sha256(args, timeout=180):
    """Run curl streaming the body into sha256 (no temp file); returns (rc, sha, size, err)."""
    cmd = ["curl", "-sS", "--max-time", str(int(timeout)), "--connect-timeout", "20"] + list(args)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    h = hashlib.sha256()
    n = 0
    while True:
        d = p.stdout.read(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
    err = p.stderr.read()
    rc = p.wait(timeout=30)
    return rc, h.hexdigest(), n, err.decode(errors="replace")


# ---------------------------------------------------------------------------------------------
def assert_served(proxy, servers, what=""):
    """A normal client still gets service on both listeners."""
    from harness import PASSWORDS
    assert proxy.alive(), f"proxy died {what}"
    payload = os.urandom(4096)
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert r.rep == 0, f"SOCKS5 client not served {what}: {r}"
    echo_roundtrip(r.sock, payload)
    r.sock.close()
    c, resp = http_connect(proxy.http_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert resp.status == 200, f"HTTP CONNECT client not served {what}: {resp}"
    c.send(payload)
    assert c.read_n(len(payload)) == payload
    c.close()
