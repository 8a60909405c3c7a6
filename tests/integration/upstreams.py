"""Upstream peers for the routing tests (issue 3, docs/configuration.md): a test PKI, dante (SOCKS5),
tinyproxy (HTTP CONNECT), stunnel (TLS in front of either), misbehaving upstreams written here
(garbage, silent, fixed HTTP error, a recording SOCKS5 server), and a target that reports the
source address it saw, so a test proves which way a user left.

Exit addresses (all loopback, the target listens on 127.0.0.1):
  direct          127.0.0.1
  dante A         127.0.0.2   (socksmethod username, system user `upsocks`)
  tinyproxy       127.0.0.3   (Bind 127.0.0.3, BasicAuth)
  dante B         127.0.0.4   (socksmethod none)
  RecordingSocks5 127.0.0.5   (written here; records what it was asked)

Every process started here is started in its own session (process group) and stopped by that
group id: dante forks children that hold the relayed streams, so kill -9 of the mother alone
would leave a transfer running.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from servers import _TcpServer, det_chunks, free_port

DIRECT = "127.0.0.1"
DANTE_A_EXIT = "127.0.0.2"
TINYPROXY_EXIT = "127.0.0.3"
DANTE_B_EXIT = "127.0.0.4"
RECORDER_EXIT = "127.0.0.5"

# The system user dante checks RFC 1929 credentials against (getpwnam + shadow).
SOCKS_USER = "upsocks"
SOCKS_PASSWORD = "upsocks-pw-R6tk"
HTTP_USER = "tpuser"
HTTP_PASSWORD = "tinyproxy-pw-V2mq"
WRONG_UPSTREAM_PASSWORD = "wrong-upstream-pw-H8zc"
TLS_NAME = "upstream.test"

START_TIMEOUT = 20.0


def upstream_secrets():
    """Upstream credentials uringproxy must never print."""
    import base64
    return [SOCKS_PASSWORD, HTTP_PASSWORD, WRONG_UPSTREAM_PASSWORD,
            base64.b64encode(f"{HTTP_USER}:{HTTP_PASSWORD}".encode()).decode(),
            base64.b64encode(f"{HTTP_USER}:{WRONG_UPSTREAM_PASSWORD}".encode()).decode()]


def have(cmd: str) -> bool:
    from shutil import which
    return which(cmd) is not None or Path(cmd).exists()


def missing_tools():
    need = {"danted": "/usr/sbin/danted", "tinyproxy": "tinyproxy", "stunnel": "stunnel4",
            "openssl": "openssl", "curl": "curl"}
    out = []
    for name, cmd in need.items():
        if not (have(cmd) or have(name)):
            out.append(name)
    return out


def ensure_system_user(name=SOCKS_USER, password=SOCKS_PASSWORD):
    """dante's `socksmethod: username` checks system accounts. Idempotent; needs root."""
    if subprocess.run(["getent", "passwd", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True,
                       capture_output=True)
    # SHA-512 with the minimum rounds: dante verifies in its one negotiate process, so a
    # yescrypt hash (Debian's default, ~30 ms) would serialise every handshake and the health
    # checks behind it, and the tests would measure dante's crypt(3) instead of the proxy.
    subprocess.run(["chpasswd", "-c", "SHA512", "-s", "1000"],
                   input=f"{name}:{password}\n".encode(), check=True, capture_output=True)


def wait_port(port, host="127.0.0.1", timeout=START_TIMEOUT, proc=None, what="server"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} is not listening on {host}:{port}")
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
class Pki:
    """A test CA, a second ("wrong") CA, and server certificates:
    - server: CN/SAN upstream.test + IP 127.0.0.1, signed by the CA
    - wrongca: the same names, signed by the other CA
    - wrongname: SAN wrong.test only, signed by the CA
    """

    def __init__(self, d: Path):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = self._ca("ca", "uringproxy test CA")
        self.other_ca, self.other_ca_key = self._ca("other_ca", "uringproxy other CA")
        self.server = self._leaf("server", TLS_NAME, [f"DNS:{TLS_NAME}", "IP:127.0.0.1"],
                                 self.ca, self.ca_key)
        self.wrongca = self._leaf("wrongca", TLS_NAME, [f"DNS:{TLS_NAME}", "IP:127.0.0.1"],
                                  self.other_ca, self.other_ca_key)
        self.wrongname = self._leaf("wrongname", "wrong.test", ["DNS:wrong.test"],
                                    self.ca, self.ca_key)

    def _run(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.dir)

    def _ca(self, name, cn):
        key, pem = self.dir / f"{name}.key", self.dir / f"{name}.pem"
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", str(key), "-out", str(pem), "-days", "3",
                  "-subj", f"/CN={cn}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return pem, key

    def _leaf(self, name, cn, sans, ca, ca_key):
        key, csr, pem = (self.dir / f"{name}.key", self.dir / f"{name}.csr",
                         self.dir / f"{name}.pem")
        ext = self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName={','.join(sans)}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n")
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        self._run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                  "-CAcreateserial", "-out", str(pem), "-days", "3", "-extfile", str(ext))
        return pem, key


# ---------------------------------------------------------------------------------------------
class Daemon:
    """A peer process in its own process group, output to a log file, stopped by group id."""

    what = "daemon"

    def __init__(self, d: Path, port=None):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        self.log_path = self.dir / f"{self.what}.log"
        self.starts = 0

    def argv(self):
        raise NotImplementedError

    def write_conf(self):
        pass

    def start(self):
        self.write_conf()
        self.starts += 1
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir,
                                     start_new_session=True)
        log.close()
        try:
            wait_port(self.port, proc=self.proc, what=f"{self.what} on {self.port}")
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}; log:\n{self.log_text()[-3000:]}") from None
        return self

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _killpg(self, sig):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # the group we created: our pid is its id
        except ProcessLookupError:
            pass

    def kill9(self):
        """SIGKILL the whole group (the mother and every child holding a stream), then wait
        until the port refuses connections (a child holding the listener dies a bit later
        than the mother we can wait for)."""
        self._killpg(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return
            time.sleep(0.05)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._killpg(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._killpg(signal.SIGKILL)  # children left behind, if any
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


class Dante(Daemon):
    """danted as a SOCKS5 upstream. auth=True: RFC 1929 against the system user upsocks."""

    what = "danted"

    def __init__(self, d, external=DANTE_A_EXIT, auth=True, port=None):
        super().__init__(d, port)
        self.external = external
        self.auth = auth
        self.conf = self.dir / "danted.conf"

    def write_conf(self):
        self.conf.write_text(f"""\
logoutput: stderr
internal: 127.0.0.1 port = {self.port}
external: {self.external}
clientmethod: none
socksmethod: {"username" if self.auth else "none"}
user.privileged: root
user.unprivileged: nobody
timeout.negotiate: 30
timeout.io: 600
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
}}
socks pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
  command: connect
  log: connect error
}}
""")

    def argv(self):
        return ["/usr/sbin/danted", "-f", str(self.conf), "-p", str(self.dir / "danted.pid")]


class Tinyproxy(Daemon):
    """tinyproxy as an HTTP CONNECT upstream, leaving from 127.0.0.3, BasicAuth, every port."""

    what = "tinyproxy"

    def __init__(self, d, bind=TINYPROXY_EXIT, user=HTTP_USER, password=HTTP_PASSWORD,
                 port=None):
        super().__init__(d, port)
        self.bind = bind
        self.user, self.password = user, password
        self.conf = self.dir / "tinyproxy.conf"

    def write_conf(self):
        auth = f"BasicAuth {self.user} {self.password}\n" if self.user else ""
        # No ConnectPort line: CONNECT to any port is allowed.
        self.conf.write_text(f"Port {self.port}\nListen 127.0.0.1\nBind {self.bind}\n"
                             f"Timeout 600\nMaxClients 200\nLogLevel Connect\n"
                             f"DisableViaHeader Yes\n{auth}")

    def argv(self):
        return ["tinyproxy", "-d", "-c", str(self.conf)]

    def connect_requests(self):
        """Request lines tinyproxy logged ('CONNECT host:port HTTP/1.1', 'GET http://...')."""
        return re.findall(r"Request \(file descriptor \d+\): (.*)", self.log_text())


class Stunnel(Daemon):
    """stunnel4 in server mode: TLS on self.port, plain TCP to backend_port."""

    what = "stunnel"

    def __init__(self, d, backend_port, cert, key, port=None):
        super().__init__(d, port)
        self.backend_port = backend_port
        self.cert, self.key = cert, key
        self.conf = self.dir / "stunnel.conf"

    def write_conf(self):
        self.conf.write_text(f"foreground = yes\npid =\ndebug = 6\n[up]\n"
                             f"accept = 127.0.0.1:{self.port}\n"
                             f"connect = 127.0.0.1:{self.backend_port}\n"
                             f"cert = {self.cert}\nkey = {self.key}\n")

    def argv(self):
        return ["stunnel4" if have("stunnel4") else "stunnel", str(self.conf)]


# ---------------------------------------------------------------------------------------------
class AddrTarget:
    """HTTP target on 127.0.0.1 that records the source address of every accepted TCP
    connection (before any request) and answers:
      GET /ip        -> the client address it saw (text)
      GET /bytes/N   -> N deterministic bytes (servers.det_chunks)
    """

    def __init__(self, name="target"):
        peers = self.peers_list = []
        lock = self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "addr-target/1"
            sys_version = ""

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                path = self.path
                if path.startswith("http://"):
                    path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
                parts = path.split("?")[0].strip("/").split("/")
                if parts[0] == "ip":
                    body = self.client_address[0].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif parts[0] == "bytes":
                    n = int(parts[1])
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    for c in det_chunks(n, 256 * 1024):
                        self.wfile.write(c)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def verify_request(self, request, client_address):
                with lock:
                    peers.append((client_address[0], client_address[1], time.monotonic()))
                return True

            def handle_error(self, request, client_address):
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.name = name
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True, name=name)
        self.thread.start()

    def peers(self, since=0):
        with self.lock:
            return [p[0] for p in self.peers_list[since:]]

    def mark(self):
        with self.lock:
            return len(self.peers_list)

    def url(self, path="/ip", host="127.0.0.1"):
        return f"http://{host}:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------
class GarbageServer(_TcpServer):
    """Accepts and answers anything with bytes that are neither SOCKS5 nor HTTP."""

    GARBAGE = b"\xde\xad\xbe\xef garbage \x00\xff\x13\x37" * 8

    def handle(self, c):
        c.sendall(self.GARBAGE)
        while True:
            d = c.recv(65536)
            if not d:
                break
            try:
                c.sendall(self.GARBAGE)
            except OSError:
                break


class SilentServer(_TcpServer):
    """Accepts TCP and never answers (reads and discards until the peer goes)."""

    def handle(self, c):
        c.settimeout(None)
        while c.recv(65536):
            pass


class StallSocks5(_TcpServer):
    """A SOCKS5 upstream that goes silent at a stage: "auth" (answers the method selection,
    never the RFC 1929 sub-negotiation) or "connect" (accepts the credentials, never answers
    the CONNECT request)."""

    def __init__(self, stage):
        self.stage = stage
        super().__init__()

    def handle(self, c):
        c.settimeout(None)
        c.recv(2 + 255)  # greeting (a pipelined client may send more: all read below)
        c.sendall(b"\x05\x02")
        if self.stage == "connect":
            time.sleep(0.05)
            c.recv(4096)  # the credentials (and maybe the request)
            c.sendall(b"\x01\x00")
        while c.recv(65536):
            pass


class FixedHttpProxy(_TcpServer):
    """Answers every request (CONNECT or not) with a fixed status and closes."""

    def __init__(self, status=403, reason="Forbidden"):
        self.status, self.reason = status, reason
        self.requests = []
        super().__init__()

    def handle(self, c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        self.requests.append(buf.split(b"\r\n", 1)[0].decode("latin-1"))
        body = b"refused by test upstream\n"
        c.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n%s" % (self.status, self.reason.encode(),
                                                   len(body), body))
        c.shutdown(socket.SHUT_WR)


class RecordingSocks5(_TcpServer):
    """A SOCKS5 upstream written here: records (atyp, host, port, user) of every CONNECT and
    relays from source address 127.0.0.5. `reply` forces a failure reply code instead.
    With credentials set it demands RFC 1929 (method 0x02)."""

    def __init__(self, user=None, password=None, reply=0, aliases=None):
        self.user, self.password, self.reply = user, password, reply
        # Names only this upstream can resolve (the proxy's resolver answers NXDOMAIN).
        self.aliases = dict(aliases or {})
        self.log = []
        self.log_lock = threading.Lock()
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
        except EOFError:  # health probes stop after the authentication
            pass

    def _handle(self, c):
        ver, nm = self._exact(c, 2)
        methods = self._exact(c, nm)
        want = 0x02 if self.user is not None else 0x00
        if ver != 5 or want not in methods:
            c.sendall(b"\x05\xff")
            return
        c.sendall(bytes([5, want]))
        user = None
        if want == 0x02:
            _v, ul = self._exact(c, 2)
            user = self._exact(c, ul).decode("latin-1")
            pl = self._exact(c, 1)[0]
            pw = self._exact(c, pl).decode("latin-1")
            ok = user == self.user and pw == self.password
            c.sendall(b"\x01" + (b"\x00" if ok else b"\x01"))
            if not ok:
                return
        ver, cmd, _rsv, atyp = self._exact(c, 4)
        if atyp == 1:
            host = socket.inet_ntoa(self._exact(c, 4))
        elif atyp == 3:
            host = self._exact(c, self._exact(c, 1)[0]).decode("latin-1")
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, self._exact(c, 16))
        else:
            c.sendall(b"\x05\x08\x00\x01" + bytes(6))
            return
        port = struct.unpack("!H", self._exact(c, 2))[0]
        with self.log_lock:
            self.log.append({"atyp": atyp, "host": host, "port": port, "user": user, "cmd": cmd})
        if self.reply:
            c.sendall(bytes([5, self.reply, 0, 1]) + bytes(6))
            return
        try:
            addr = socket.getaddrinfo(self.aliases.get(host, host), port, socket.AF_INET,
                                      socket.SOCK_STREAM)[0][4]
            up = socket.create_connection(addr, timeout=10, source_address=(RECORDER_EXIT, 0))
        except OSError:
            c.sendall(b"\x05\x05\x00\x01" + bytes(6))
            return
        bh, bp = up.getsockname()[:2]
        c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton(bh) + struct.pack("!H", bp))
        _relay(c, up)


def _relay(a, b):
    a.settimeout(None)
    b.settimeout(None)
    socks = [a, b]
    open_ = {a: True, b: True}
    try:
        while open_[a] or open_[b]:
            r, _, _ = select.select([s for s in socks if open_[s]], [], [], 120)
            if not r:
                return
            for s in r:
                other = b if s is a else a
                try:
                    d = s.recv(262144)
                except OSError:
                    return
                if not d:
                    open_[s] = False
                    try:
                        other.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                other.sendall(d)
    finally:
        b.close()


# ---------------------------------------------------------------------------------------------
# Client helpers: fetch /ip through each inbound mode and say which address the target saw.
def curl_proxy_args(mode, proxy, user, pw):
    if mode == "socks5h-curl":
        return ["--socks5-hostname", f"127.0.0.1:{proxy.socks_port}", "--proxy-user",
                f"{user}:{pw}"]
    if mode == "http-forward":
        return ["-x", f"http://127.0.0.1:{proxy.http_port}", "--proxy-user", f"{user}:{pw}"]
    if mode == "http-connect":
        return ["-p", "-x", f"http://127.0.0.1:{proxy.http_port}", "--proxy-user",
                f"{user}:{pw}"]
    raise ValueError(mode)


def http_get_over(sock, host, port, path="/ip", timeout=20.0):
    """GET over an open tunnel; returns (status, body)."""
    sock.settimeout(timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                 .encode())
    buf = b""
    while True:
        try:
            d = sock.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def pysocks_fetch_ip(proxy, user, pw, host, port, timeout=20.0):
    """python3-socks (PySocks) client, remote DNS: returns the address the target saw."""
    import socks
    s = socks.socksocket()
    s.set_proxy(socks.SOCKS5, "127.0.0.1", proxy.socks_port, rdns=True, username=user,
                password=pw)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        status, body = http_get_over(s, host, port)
    finally:
        s.close()
    assert status == 200, f"target answered {status}"
    return body.decode()


def fetch_ip(mode, proxy, user, pw, target, host="127.0.0.1", timeout=30):
    """Fetch /ip through the proxy; returns (ok, address-or-error-text)."""
    from clients import curl
    if mode == "socks5-python":
        try:
            return True, pysocks_fetch_ip(proxy, user, pw, host, target.port)
        except Exception as e:  # noqa: BLE001 - report whatever the client raised
            return False, f"{type(e).__name__}: {e}"
    r = curl(curl_proxy_args(mode, proxy, user, pw) + ["-f", target.url("/ip", host)],
             timeout=timeout)
    if r.returncode != 0:
        return False, f"curl rc={r.returncode}: {r.stderr.decode(errors='replace').strip()}"
    return True, r.stdout.decode()


MODES = ["socks5h-curl", "socks5-python", "http-forward", "http-connect"]


def sha256_of(n):
    from servers import det_sha256
    return det_sha256(n)


def write_proxies_file(workdir: Path, proxies, mode=0o600, name="external_proxy.json"):
    p = Path(workdir) / name
    p.write_text(json.dumps({"proxies": proxies}, indent=2))
    os.chmod(p, mode)
    return p


def digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------------------------
# Raw attempts through each inbound mode, reporting exactly what the client got.
def socks_try(proxy, user, pw, host, port, timeout=30.0):
    """SOCKS5 CONNECT (raw client), then GET /ip. Returns ("ok", ip), ("rep", code),
    ("auth", status), or ("error", text) for a closed or broken exchange."""
    from clients import socks5_open
    try:
        r = socks5_open(proxy.socks_port, host, port, user=user, pw=pw, timeout=timeout)
    except (EOFError, OSError, AssertionError) as e:
        return ("error", f"{type(e).__name__}: {e}")
    try:
        if r.method != 0x02:
            return ("error", f"method {r.method:#x}")
        if r.auth_status:
            return ("auth", r.auth_status)
        if r.rep:
            return ("rep", r.rep)
        status, body = http_get_over(r.sock, host, port, timeout=timeout)
        return ("ok", body.decode()) if status == 200 else ("error", f"target status {status}")
    except OSError as e:
        return ("error", f"{type(e).__name__}: {e}")
    finally:
        r.sock.close()


def connect_try(proxy, user, pw, host, port, timeout=30.0):
    """HTTP CONNECT (raw client), then GET /ip. Returns ("ok", ip), ("status", code) or
    ("error", text)."""
    from clients import http_connect
    try:
        c, resp = http_connect(proxy.http_port, host, port, user=user, pw=pw, timeout=timeout)
    except (EOFError, OSError, AssertionError) as e:
        return ("error", f"{type(e).__name__}: {e}")
    try:
        if resp.status != 200:
            return ("status", resp.status)
        c.s.sendall(f"GET /ip HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                    .encode())
        r = c.read_response()
        return ("ok", r.body.decode()) if r.status == 200 else ("error", f"target {r.status}")
    except (EOFError, OSError, AssertionError) as e:
        return ("error", f"{type(e).__name__}: {e}")
    finally:
        c.close()


def forward_try(proxy, user, pw, host, port, timeout=30.0):
    """HTTP absolute-URI GET /ip through the proxy. Returns ("ok", ip), ("status", code) or
    ("error", text)."""
    from clients import HttpConn, http_request
    try:
        c = HttpConn(proxy.http_port, timeout=timeout)
    except OSError as e:
        return ("error", f"{type(e).__name__}: {e}")
    try:
        c.send(http_request("GET", f"http://{host}:{port}/ip", host_header=f"{host}:{port}",
                            headers=[("Connection", "close")], auth=(user, pw)))
        r = c.read_response()
        if r.status != 200 or r.header("Server") != "addr-target/1":
            return ("status", r.status)
        return ("ok", r.body.decode())
    except (EOFError, OSError, AssertionError) as e:
        return ("error", f"{type(e).__name__}: {e}")
    finally:
        c.close()


TRIES = {"socks": socks_try, "connect": connect_try, "forward": forward_try}
