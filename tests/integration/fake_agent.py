"""A reverse agent in Python (docs/agent-protocol.md), run as its own process by test_agents.py:
the test peer for the gateway side. It keeps one control link (answering PINGs), keeps
`--idle` authenticated reverse connections ready and opens another each time one is used,
reconnects with exponential backoff and jitter, checks its own ACL (private ranges denied
unless --allow lists them), connects from --source (so a target that reports its peer tells
agents apart), answers STATUS with SOCKS5 codes and relays raw bytes.

--mode silent: takes TUNNELs and never answers; --mode garbage: answers a TUNNEL with junk.
Prints "agent ready" once its control link is authenticated (again after each reconnect)."""
import argparse
import ipaddress
import random
import select
import socket
import ssl
import struct
import sys
import threading
import time

MAGIC = b"UPAG"
HELLO, AUTH_RESULT, PING, PONG, TUNNEL, STATUS, ERROR = range(1, 8)
PRIVATE = [ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "100.64.0.0/10", "0.0.0.0/8", "::1/128", "fc00::/7", "fe80::/10")]


def frame(t, body=b""):
    return struct.pack("!BH", t, len(body)) + body


def s8(b):
    return bytes([len(b)]) + b


def hello(role, id_, secret):
    return frame(HELLO, MAGIC + bytes([1, role]) + s8(id_.encode()) + s8(secret.encode())
                 + s8(b"fake-agent 1"))


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("closed")
        buf += d
    return buf


def read_frame(s):
    t, n = struct.unpack("!BH", recv_exact(s, 3))
    return t, recv_exact(s, n) if n else b""


class Agent:
    def __init__(self, a):
        self.a = a
        host, port = a.gateway.rsplit(":", 1)
        self.gw = (host, int(port))
        self.ctx = ssl.create_default_context(cafile=a.ca)
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.allow = [ipaddress.ip_network(n) for n in a.allow]
        self.lock = threading.Lock()
        self.session = 0     # bumped at each authenticated control link
        self.idle = 0        # reverse connections authenticated and waiting
        self.opening = 0
        self.cv = threading.Condition(self.lock)

    def dial(self):
        raw = socket.create_connection(self.gw, timeout=10)
        s = self.ctx.wrap_socket(raw, server_hostname="gw.test")
        return s

    # --- control link, with backoff and jitter
    def control_loop(self):
        backoff = 0.2
        while True:
            up = False
            try:
                s = self.dial()
                s.sendall(hello(1, self.a.id, self.a.secret))
                t, body = read_frame(s)
                if t != AUTH_RESULT or body[0] != 0:
                    print(f"agent refused: type {t} code {body[:1].hex()}", flush=True)
                    s.close()
                    raise OSError("refused")
                backoff = 0.2
                with self.lock:
                    self.session += 1
                    self.cv.notify_all()
                up = True
                print("agent ready", flush=True)
                s.settimeout(None)
                while True:
                    t, body = read_frame(s)
                    if t == PING:
                        s.sendall(frame(PONG, body))
                    elif t == ERROR:
                        print(f"agent: gateway says error {body[:1].hex()} {body[1:]!r}",
                              flush=True)
                        break
            except (OSError, EOFError, ssl.SSLError) as e:
                print(f"agent: control link down: {e}", flush=True)
            # Only a link that was up ends a session: bumping on a failed attempt too would
            # flip the parity (odd = up) and let the pool open reverse links with no control
            # link, then wait forever once the next control link is up.
            if up:
                with self.lock:
                    self.session += 1  # idle connections of the old link are the gateway's to drop
                    self.idle = 0
                    self.cv.notify_all()
            time.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 2.0)

    # --- the pool of reverse connections
    def pool_loop(self):
        while True:
            with self.lock:
                while self.session % 2 == 0 or self.idle + self.opening >= self.a.idle:
                    self.cv.wait(0.5)
                self.opening += 1
                session = self.session
            threading.Thread(target=self.reverse, args=(session,), daemon=True).start()

    def reverse(self, session):
        opening = True
        counted = False
        try:
            s = self.dial()
            s.sendall(hello(2, self.a.id, self.a.secret))
            t, body = read_frame(s)
            with self.lock:
                self.opening -= 1
                opening = False
                if t != AUTH_RESULT or body[0] != 0 or self.session != session:
                    s.close()
                    self.cv.notify_all()
                    return
                self.idle += 1
                counted = True
                self.cv.notify_all()
            s.settimeout(None)
            t, body = read_frame(s)
            with self.lock:
                self.idle -= 1
                counted = False
                self.cv.notify_all()  # used: the pool loop opens another
            if t != TUNNEL:
                s.close()
                return
            self.tunnel(s, body)
        except (OSError, EOFError, ssl.SSLError):
            with self.lock:
                if opening:
                    self.opening -= 1
                if counted:
                    self.idle -= 1
                self.cv.notify_all()
            time.sleep(0.1 + random.random() * 0.2)  # no tight reconnect loop

    def tunnel(self, s, body):
        tid = body[:8]
        port = struct.unpack("!H", body[8:10])[0]
        atyp = body[10]
        if atyp == 1:
            host = socket.inet_ntop(socket.AF_INET, body[11:15])
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, body[11:27])
        else:
            host = body[12:12 + body[11]].decode()
        if self.a.mode == "silent":
            time.sleep(600)
            return
        if self.a.mode == "garbage":
            s.sendall(b"\xff\xff\xffnot a frame at all")
            time.sleep(0.5)
            s.close()
            return
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            try:
                addr = ipaddress.ip_address(socket.gethostbyname(host))
            except OSError:
                return self.status(s, tid, 4)
        if any(addr in n for n in PRIVATE) and not any(addr in n for n in self.allow):
            return self.status(s, tid, 2)
        try:
            t = socket.create_connection((str(addr), port), timeout=5,
                                         source_address=(self.a.source, 0))
        except ConnectionRefusedError:
            return self.status(s, tid, 5)
        except socket.timeout:
            return self.status(s, tid, 6)
        except OSError as e:
            print(f"agent: tunnel to {addr}:{port} failed: {e!r}", flush=True)
            return self.status(s, tid, 1)
        s.sendall(frame(STATUS, tid + b"\x00"))
        self.relay(s, t)

    def status(self, s, tid, code):
        try:
            s.sendall(frame(STATUS, tid + bytes([code])))
            s.close()
        except OSError:
            pass

    def relay(self, s, t):
        """Both directions on one thread (an SSL object is not for two threads at once)."""
        s.setblocking(False)
        t.setblocking(False)
        peer = {s: t, t: s}
        out = {s: b"", t: b""}   # bytes waiting to be written to the key
        eof = {s: False, t: False}
        shut = False
        try:
            while True:
                rl = [x for x in (s, t) if not eof[x] and len(out[peer[x]]) < (1 << 20)]
                wl = [x for x in (s, t) if out[x]]
                if s in rl and s.pending():
                    r, w = [s], []
                else:
                    r, w, _ = select.select(rl, wl, [], 300)
                    if not r and not w:
                        break
                for x in r:
                    try:
                        d = x.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        continue
                    except (OSError, ssl.SSLError):
                        d = b""
                    if d:
                        out[peer[x]] += d
                    else:
                        eof[x] = True
                for x in w:
                    try:
                        n = x.send(out[x][:16384])
                        out[x] = out[x][n:]
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        pass
                if eof[t] and not out[s]:
                    break  # the target is done and everything it said is out
                if eof[s] and not out[t] and not shut:
                    t.shutdown(socket.SHUT_WR)
                    shut = True
        except (OSError, ssl.SSLError):
            pass
        for x in (s, t):
            try:
                x.close()
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gateway", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--idle", type=int, default=4)
    p.add_argument("--allow", action="append", default=[])
    p.add_argument("--mode", default="normal", choices=["normal", "silent", "garbage"])
    a = p.parse_args()
    agent = Agent(a)
    threading.Thread(target=agent.pool_loop, daemon=True).start()
    agent.control_loop()


if __name__ == "__main__":
    sys.exit(main())
