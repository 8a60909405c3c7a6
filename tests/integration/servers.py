"""Fixture servers for the integration suite, all on loopback, all threads in the test process.

- OriginServer: an HTTP/1.1 origin (keep-alive) with deterministic bodies, chunked bodies, echo,
  sha256 of uploads, a request log (what the origin saw: request target, headers, client).
- EchoServer: echoes bytes; on EOF from the client it shuts its write side and closes.
- DrainServer: reads until EOF, only then answers with the byte count and sha256 (half-close).
- ResetServer: sends K bytes then closes with SO_LINGER 0 (RST).
- BlackHole: a listener with backlog 0 whose accept queue is full, so SYNs are dropped.
- DnsServer: a UDP resolver answering A/AAAA for *.test names, NXDOMAIN for nx.test.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import select
import socket
import socketserver
import struct
import threading
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------------------------------------
# Deterministic bodies: byte i of any body is PATTERN[i % len(PATTERN)]. The pattern length is a
# prime so that no relay buffer size lines up with it: a lost, duplicated or reordered chunk
# changes the sha256.
PATTERN = random.Random(20240607).randbytes(65521)
_BIG = PATTERN * 18  # > 1 MiB + one pattern, so any 1 MiB window is a plain slice


def det_chunks(n: int, chunk: int = 1 << 20):
    off = 0
    while off < n:
        size = min(chunk, n - off)
        start = off % len(PATTERN)
        yield _BIG[start:start + size]
        off += size


def det_bytes(n: int) -> bytes:
    return b"".join(det_chunks(n))


@lru_cache(maxsize=None)
def det_sha256(n: int) -> str:
    h = hashlib.sha256()
    for c in det_chunks(n):
        h.update(c)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
class _OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "origin/1"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- helpers --
    def _record(self, body_len=None, body_sha=None):
        rec = {
            "method": self.command,
            "target": self.path,
            "request_line": self.requestline,
            "headers": [[k, v] for k, v in self.headers.items()],
            "client": list(self.client_address[:2]),
            "server": self.server.name,
            "body_len": body_len,
            "body_sha256": body_sha,
        }
        with self.server.lock:
            self.server.requests.append(rec)
        return rec

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        h = hashlib.sha256()
        data = []
        n = 0
        if "chunked" in te:
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("eof in chunk size")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                left = size
                while left:
                    c = self.rfile.read(min(left, 1 << 20))
                    if not c:
                        raise ConnectionError("eof in chunk")
                    h.update(c)
                    data.append(c)
                    n += len(c)
                    left -= len(c)
                self.rfile.readline(16)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                c = self.rfile.read(min(left, 1 << 20))
                if not c:
                    raise ConnectionError("eof in body")
                h.update(c)
                data.append(c)
                n += len(c)
                left -= len(c)
        return data, n, h.hexdigest()

    def _send(self, code, body: bytes, ctype="application/octet-stream", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self):
        path = self.path
        # The origin must be addressed in origin form; record whatever came, and still answer
        # for an absolute form so a test can assert on the record rather than on a hang.
        if path.startswith("http://"):
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        parts = path.split("?")[0].strip("/").split("/")
        return parts

    # -- methods --
    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def _dispatch(self):
        parts = self._route()
        body_chunks, body_len, body_sha = ([], 0, hashlib.sha256(b"").hexdigest())
        if self.command in ("POST", "PUT"):
            body_chunks, body_len, body_sha = self._read_body()
        rec = self._record(body_len if self.command in ("POST", "PUT") else None,
                           body_sha if self.command in ("POST", "PUT") else None)
        kind = parts[0] if parts else ""
        if kind == "bytes":
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command != "HEAD":
                for c in det_chunks(n, 256 * 1024):
                    self.wfile.write(c)
        elif kind == "chunked":
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command == "HEAD":
                return
            body = det_bytes(n)
            sizes = [1, 7, 100, 4096, 65536, 3]
            off = i = 0
            while off < n:
                size = min(sizes[i % len(sizes)], n - off)
                self.wfile.write(b"%x\r\n" % size + body[off:off + size] + b"\r\n")
                off += size
                i += 1
            self.wfile.write(b"0\r\n\r\n")
        elif kind == "close":
            # A close-delimited response: no Content-Length, no chunking.
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if self.command != "HEAD":
                for c in det_chunks(n, 256 * 1024):
                    self.wfile.write(c)
        elif kind == "echo":
            self._send(200, b"".join(body_chunks), extra=[("X-Body-Sha256", body_sha)])
        elif kind == "sha256":
            out = json.dumps({"len": body_len, "sha256": body_sha}).encode()
            self._send(200, out, "application/json")
        elif kind == "info":
            self._send(200, json.dumps(rec).encode(), "application/json")
        elif kind == "hop":
            # Hop-by-hop headers in a response: a proxy must not pass them on.
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "X-Origin-Hop")
            self.send_header("X-Origin-Hop", "must-not-reach-client")
            self.send_header("Keep-Alive", "timeout=5, max=100")
            self.send_header("X-Origin-E2E", "must-reach-client")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"ok")
        elif kind == "status":
            code = int(parts[1])
            self.send_response(code)
            if code in (204, 304):
                if code == 304:
                    self.send_header("ETag", '"v1"')
                self.end_headers()
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()
        else:
            self._send(404, b"not found\n", "text/plain")


class OriginServer:
    def __init__(self, name: str, host: str = "127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET

        class _S(ThreadingHTTPServer):
            address_family = fam
            daemon_threads = True
            request_queue_size = 128

            def handle_error(self, request, client_address):
                import sys
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self.httpd = _S((host, 0), _OriginHandler)
        self.httpd.name = name
        self.httpd.requests = []
        self.httpd.lock = threading.Lock()
        self.port = self.httpd.server_address[1]
        self.name = name
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       daemon=True, name=f"origin-{name}")
        self.thread.start()

    @property
    def requests(self):
        with self.httpd.lock:
            return list(self.httpd.requests)

    def find(self, marker: str):
        """Requests whose target contains marker (tests put a unique query string in)."""
        return [r for r in self.requests if marker in r["target"]]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------
class _TcpServer:
    """Accept loop in a thread; each connection handled in its own daemon thread."""

    def __init__(self, host="127.0.0.1", backlog=128):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name=type(self).__name__)
        self.thread.start()

    def _loop(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if not r:
                    continue
                c, _ = self.sock.accept()
            except OSError:
                if self._stop:
                    return
                continue
            self.accepted += 1
            threading.Thread(target=self._guard, args=(c,), daemon=True).start()

    def _guard(self, c):
        try:
            c.settimeout(120)
            self.handle(c)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def handle(self, c):
        raise NotImplementedError

    def close(self):
        self._stop = True
        self.sock.close()


class EchoServer(_TcpServer):
    def handle(self, c):
        while True:
            d = c.recv(262144)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)


class DrainServer(_TcpServer):
    """Reads to EOF, then answers b"GOT <n> <sha256>\\n" and closes: only works if the proxy
    passed the client's half-close on while keeping the way back open."""

    def handle(self, c):
        h = hashlib.sha256()
        n = 0
        while True:
            d = c.recv(262144)
            if not d:
                break
            h.update(d)
            n += len(d)
        c.sendall(b"GOT %d %s\n" % (n, h.hexdigest().encode()))
        c.shutdown(socket.SHUT_WR)


class BannerServer(_TcpServer):
    """Speaks first (like SMTP), then echoes."""

    def handle(self, c):
        c.sendall(b"220 banner ready\r\n")
        EchoServer.handle(self, c)


class ResetServer(_TcpServer):
    """Sends K deterministic bytes, then resets the connection (SO_LINGER 0)."""

    K = 200000

    def handle(self, c):
        for chunk in det_chunks(self.K, 65536):
            c.sendall(chunk)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()


# ---------------------------------------------------------------------------------------------
def closed_port(host="127.0.0.1") -> int:
    """A port nothing listens on (bound then closed without listen: connect gets RST)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


class OkHttpProxy:
    """Answers every request head with 200: an http upstream the health checks keep up."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(30)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        d = c.recv(4096)
                        if not d:
                            break
                        head += d
                    c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: collections.deque = collections.deque(maxlen=1024)


def _port_slice() -> tuple[int, int]:
    """This pytest-xdist worker's share of the ports below the ephemeral range: workers draw
    from disjoint slices, so two of them never pick one port in the moment before its server
    binds it (a proxy's metrics port was taken so in CI)."""
    high = _ephemeral_low()
    low = max(1024, high - 12000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    index = int(worker[2:]) % count if worker[2:].isdigit() else 0
    width = (high - low) // count
    return low + index * width, low + (index + 1) * width


def free_port(host="127.0.0.1") -> int:
    """A port free now, taken from below the kernel's ephemeral range. A test that kills a server
    and binds its port again (a gateway restart, a listener standing in for a dead one) must not
    find it taken meanwhile by some client's connect(), which only ever draws ephemeral ports: with
    200 agents reconnecting beside the rest of the suite that happened (EADDRINUSE in CI). A port
    is not handed out twice in a row of 1024 picks: a test picks several before any is bound."""
    low, high = _port_slice()
    for _ in range(200):
        p = random.randrange(low, high)
        if p in _handed_out:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, p))
        except OSError:
            continue
        finally:
            s.close()
        _handed_out.append(p)
        return p
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ipv6_loopback_available() -> bool:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class BlackHole:
    """A loopback address:port whose SYNs get no answer: a listener with backlog 0 that never
    accepts, with its accept queue pre-filled so the kernel drops further SYNs."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(16):
            if not self._probe_connects(0.3):
                break
        else:
            raise RuntimeError("black hole: accept queue never filled")

    def _probe_connects(self, wait) -> bool:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        _, w, _ = select.select([], [s], [], wait)
        ok = bool(w) and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        if ok:
            self.fillers.append(s)  # keep it: it holds a slot in the accept queue
        else:
            s.close()
        return ok

    def verify(self, wait=1.0) -> bool:
        """True when a fresh connect does not complete within `wait` seconds."""
        return not self._probe_connects(wait)

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()


# ---------------------------------------------------------------------------------------------
class DnsServer:
    """Tiny UDP DNS responder. Names are matched case-insensitively without the trailing dot.

    - nx.test and any name outside .test (except localhost) → NXDOMAIN
    - v6.test → AAAA ::1 only (A: no answer)
    - localhost and every other *.test name → A 127.0.0.1 (AAAA: NOERROR, no answer)
    - names starting with "slow" are answered after SLOW_DELAY seconds
    """

    SLOW_DELAY = 1.0

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="dns")
        self.thread.start()

    @staticmethod
    def _parse_qname(pkt, off):
        labels = []
        while True:
            ln = pkt[off]
            off += 1
            if ln == 0:
                break
            labels.append(pkt[off:off + ln].decode("ascii", "replace"))
            off += ln
        return ".".join(labels), off

    def answer_for(self, name: str, qtype: int):
        """(rcode, [(type, rdata)])"""
        n = name.lower().rstrip(".")
        if n == "nx.test" or (not n.endswith(".test") and n != "localhost"):
            return 3, []
        if n == "v6.test":
            return 0, ([(28, socket.inet_pton(socket.AF_INET6, "::1"))] if qtype == 28 else [])
        if qtype == 1:
            return 0, [(1, socket.inet_aton("127.0.0.1"))]
        return 0, []

    def _loop(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if not r:
                    continue
                pkt, addr = self.sock.recvfrom(4096)
            except OSError:
                if self._stop:
                    return
                continue
            try:
                resp = self._respond(pkt)
            except Exception:  # malformed query: ignore
                continue
            if pkt[13:17].lower() == b"slow":
                threading.Timer(self.SLOW_DELAY, self._send, (resp, addr)).start()
            else:
                self._send(resp, addr)

    def _send(self, resp, addr):
        try:
            self.sock.sendto(resp, addr)
        except OSError:
            pass

    def _respond(self, pkt):
        qid, flags, qd, _an, _ns, _ar = struct.unpack("!HHHHHH", pkt[:12])
        name, off = self._parse_qname(pkt, 12)
        qtype, qclass = struct.unpack("!HH", pkt[off:off + 4])
        question = pkt[12:off + 4]
        with self.lock:
            self.queries.append((name, qtype))
        rcode, answers = self.answer_for(name, qtype)
        rflags = 0x8000 | (flags & 0x0100) | 0x0080 | 0x0400 | rcode  # QR, RD copied, RA, AA
        out = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0) + question
        for typ, rdata in answers:
            out += struct.pack("!HHHIH", 0xC00C, typ, 1, 60, len(rdata)) + rdata
        return out

    def close(self):
        self._stop = True
        self.sock.close()


def wait_until(pred, timeout, interval=0.05):
    """Poll pred() until it is truthy or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
