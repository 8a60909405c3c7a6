"""The two relay paths of a plain tunnel (src/relay/buffer_relay.cpp, src/relay/splice_relay.cpp):
every direction starts on the small-message path (IORING_OP_RECV into a provided buffer of the
worker's pool, then a send of it), moves to splice for good on a read that fills a 16 KiB buffer
or on a recv that finds the pool empty (ENOBUFS), and holds a buffer only from its recv until
its send completes.

Real sockets on both ends (the test holds the client socket and the target's accepted socket),
every byte checked (sha256 of a seeded pseudo-random stream), instances of their own with
URINGPROXY_RELAY / URINGPROXY_RELAY_BUFFERS and one worker.

Which path a direction is on is read from the worker ring's /proc/<pid>/fdinfo: its PollList
names every request waiting on a socket by opcode. A direction on the buffer path waiting for
bytes is an IORING_OP_RECV (27, holds no buffer); a buffer held by a send the peer does not take
is an IORING_OP_SEND (26); a direction on the splice path waits with IORING_OP_POLL_ADD (6). With
one worker and nothing else going on, the counts of those three (minus the idle baseline) are the
state of the tunnels under test: e.g. {27: 2} is one idle tunnel with both directions on buffers.
(On a kernel whose fdinfo has no PollList the tests skip.)
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import re
import select
import socket
import struct
import termios
import time
from collections import Counter

import pytest

import clients as cl
from harness import peer_mode
from servers import wait_until

pytestmark = pytest.mark.uringproxy_only

TIMEOUT = 20.0
OP_POLL_ADD, OP_SEND, OP_RECV = 6, 26, 27
TUNNEL_OPS = (OP_POLL_ADD, OP_SEND, OP_RECV)
PACED_CHUNK = 4096     # paced writes (write_paced): the proxy's reads stay under 16 KiB
WRITER_SNDBUF = 2048   # SO_SNDBUF of paced writers (the kernel doubles it, then its minimum)
SMALL_MSS = 1024       # announced by receivers that do not read (see Target)
HOLD_DATA = random.Random(99).randbytes(4 << 20)  # what a tunnel writes until it blocks


# ---------------------------------------------------------------------------------------------
# the proxy under test, and what its ring is waiting on
def ring_ops(pid):
    """Counter of the opcodes in the PollList of every io_uring fd of `pid`; None when fdinfo
    has no PollList (old kernel, or the ring's lock was busy: the kernel then prints nothing)."""
    total = Counter()
    seen = False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[io_uring]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                text = f.read()
        except OSError:
            continue
        if "PollList:" not in text:
            return None
        seen = True
        listing = False
        for ln in text.splitlines():
            if ln.startswith("PollList:"):
                listing = True
                continue
            if listing:
                if not ln[:1].isspace():
                    break
                m = re.search(r"op=(\d+)", ln)
                if m:
                    total[int(m.group(1))] += 1
    return total if seen else None


class Relay:
    """One uringproxy instance (one worker, auth none) with a relay mode and buffer pool."""

    def __init__(self, proc, mode, buffers):
        self.p = proc
        self.mode = mode
        self.buffers = buffers
        self.base = None

    def start(self):
        env = {"URINGPROXY_RELAY": self.mode,
               "URINGPROXY_RELAY_BUFFERS": str(self.buffers) if self.buffers else None}
        with patched_env(env):
            self.p.start()
        text = self.p.output_text()
        if self.mode != "adaptive":
            assert f"URINGPROXY_RELAY={self.mode}" in text, "the relay mode was not taken"
        if self.buffers:
            assert f"URINGPROXY_RELAY_BUFFERS={self.buffers}:" in text, "pool size not taken"
        assert "provided buffer rings unavailable" not in text, "no provided buffers on this kernel"
        # The idle baseline: listeners' accepts, the mailbox; no tunnel op.
        got = []
        if not wait_until(lambda: got.append(ring_ops(self.p.pid)) or got[-1] is not None,
                          5.0, 0.01):
            pytest.skip("no PollList in the io_uring fdinfo of this kernel")
        self.base = got[-1]
        return self

    def ops(self):
        """Tunnel ops over the idle baseline, as {opcode: count} without zeros; None if the
        fdinfo could not be read this time."""
        c = ring_ops(self.p.pid)
        if c is None:
            return None
        out = {op: c[op] - self.base[op] for op in TUNNEL_OPS}
        return {k: v for k, v in out.items() if v}

    def wait_ops(self, want, what, timeout=TIMEOUT):
        """Wait until the tunnel ops are exactly `want` (a dict or a predicate)."""
        pred = want if callable(want) else (lambda o: o == want)
        last = [None]

        def check():
            o = self.ops()
            if o is None:
                return False
            last[0] = o
            return pred(o)

        if not wait_until(check, timeout, 0.005):
            pytest.fail(f"[{self.mode}] {what}: ring waits on {describe(last[0])}, want "
                        f"{want if not callable(want) else 'the predicate'}", pytrace=False)
        return last[0]

    def matches(self, pred):
        o = self.ops()
        return o is not None and pred(o)


def describe(o):
    if o is None:
        return "(fdinfo unreadable)"
    names = {OP_POLL_ADD: "POLL_ADD(splice)", OP_SEND: "SEND(buffer held)",
             OP_RECV: "RECV(buffer path)"}
    return "{" + ", ".join(f"{names.get(k, k)}: {v}" for k, v in sorted(o.items())) + "}"


@contextlib.contextmanager
def patched_env(env):
    old = {k: os.environ.get(k) for k in env}
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def relays(instances):
    """relays(mode, buffers=None, idle_ms=None): an instance per distinct setting, shared by the
    tests of this module; each must exit 0 with clean output at the end."""
    if peer_mode():
        pytest.skip("uringproxy relay internals")
    made = {}

    def get(mode, buffers=None, idle_ms=None):
        key = (mode, buffers, idle_ms)
        r = made.get(key)
        if r is None or not r.p.alive():
            over = {"workers": 1, "auth": "none"}
            if idle_ms:
                over["limits"] = {"idle_timeout_ms": idle_ms}
            proc = instances.make(f"relay-{mode}-{buffers or 'dflt'}", over, users={"users": []})
            r = made[key] = Relay(proc, mode, buffers).start()
        return r

    yield get
    errors = []
    for r in made.values():
        was_alive = r.p.alive()
        rc = r.p.stop()
        if was_alive and rc != 0:
            errors.append(f"{r.p.name}: exit code {rc} after SIGTERM (want 0); stderr tail:\n"
                          + "\n".join(r.p.stderr_lines()[-30:]))
        errors += r.p.problems()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def relay(relays):
    """As `relays`, and after the test: every instance it used is alive, printed no sanitizer
    report, and has no tunnel op left on its ring (no tunnel of the test still open)."""
    used = []

    def get(*a, **kw):
        r = relays(*a, **kw)
        if r not in [u for u, _ in used]:
            used.append((r, r.p.mark()))
        return r

    yield get
    for r, start in used:
        if not r.p.alive():
            pytest.fail(f"{r.p.name} died (rc={r.p.proc.returncode}); stderr tail:\n"
                        + "\n".join(r.p.stderr_lines()[-40:]), pytrace=False)
        msgs = r.p.problems(start)
        if msgs:
            pytest.fail("\n\n".join(msgs), pytrace=False)
        r.wait_ops({}, "after the test", timeout=10)


# ---------------------------------------------------------------------------------------------
# sockets
class Target:
    """A listener the test accepts from itself. `rcvbuf` and `mss` are set before listen(), so
    accepted sockets take a small receive buffer (and window) from the start, and announce a
    small MSS (the proxy sizes its send buffer from the peer's MSS: with loopback's 64 KiB it
    grows to 4 MiB before a send blocks; with SMALL_MSS it stays some hundred KiB)."""

    def __init__(self, rcvbuf=None, mss=None):
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss:
            self.ls.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(TIMEOUT)
        self.port = self.ls.getsockname()[1]

    def accept(self, sndbuf=None):
        c, _ = self.ls.accept()
        c.settimeout(TIMEOUT)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sndbuf:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        return c

    def close(self):
        self.ls.close()


def open_tunnel(p, port, sndbuf=None, rcvbuf=None, mss=None):
    """SOCKS5 (no auth) to 127.0.0.1:port; buffer sizes and MSS set before connect."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if mss:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    s.settimeout(TIMEOUT)
    s.connect(("127.0.0.1", p.socks_port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"\x05\x01\x00")
    assert cl.recv_exact(s, 2) == b"\x05\x00"
    s.sendall(cl.socks5_request("127.0.0.1", port))
    rep, _, _ = cl.read_socks5_reply(s)
    assert rep == 0, f"SOCKS5 reply {rep}"
    return s


def pair(p, target, c_sndbuf=None, c_rcvbuf=None, t_sndbuf=None, c_mss=None):
    """A tunnel through the proxy: (client socket, the target's accepted socket). The proxy
    connects before it replies, so the next accept is this tunnel's."""
    c = open_tunnel(p, target.port, c_sndbuf, c_rcvbuf, c_mss)
    return c, target.accept(t_sndbuf)


def stream(seed, n):
    return random.Random(seed).randbytes(n)


def sha(b):
    return hashlib.sha256(b).hexdigest()


class Steady:
    """A predicate that must hold at every poll for `hold_s` in a row: a send that waits only
    for an ACK on loopback is done within microseconds, one that waits for a reader that
    does not read stays."""

    def __init__(self, pred, hold_s=0.2):
        self.pred = pred
        self.hold_s = hold_s
        self.since = None

    def __call__(self):
        if not self.pred():
            self.since = None
            return False
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since >= self.hold_s


class SockDiag:
    """Unread bytes of one loopback TCP socket, looked up by its ports with sock_diag
    (NETLINK_SOCK_DIAG, one exact lookup: no walk over the host's sockets, which on a
    machine running load tests can be tens of thousands, most in TIME_WAIT)."""

    NETLINK_SOCK_DIAG = 4
    SOCK_DIAG_BY_FAMILY = 20
    NLM_F_REQUEST = 1
    NLMSG_ERROR = 2
    LO = socket.inet_aton("127.0.0.1") + bytes(12)

    def __init__(self):
        self.nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, self.NETLINK_SOCK_DIAG)
        self.seq = 0

    def unread(self, local_port, remote_port):
        """rx_queue (arrived, not read by the owner) of the socket 127.0.0.1:local_port <->
        127.0.0.1:remote_port, or None if there is none."""
        self.seq += 1
        sockid = (struct.pack("!HH", local_port, remote_port) + self.LO + self.LO
                  + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF))
        req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
        self.nl.send(struct.pack("=IHHII", 16 + len(req), self.SOCK_DIAG_BY_FAMILY,
                                 self.NLM_F_REQUEST, self.seq, 0) + req)
        while True:
            data = self.nl.recv(65536)
            _, kind, _, seq, _ = struct.unpack_from("=IHHII", data)
            if seq == self.seq:
                break
        if kind == self.NLMSG_ERROR:
            return None
        return struct.unpack_from("=I", data, 16 + 56)[0]  # inet_diag_msg.idiag_rqueue

    def close(self):
        self.nl.close()


def inq(s):
    """Bytes waiting in our own socket's receive queue."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def write_paced(writers, readers, streams, cap, done, limit_s=TIMEOUT):
    """Writes PACED_CHUNK bytes of each stream on its writer, round-robin, only when the
    proxy's socket at the other end (readers[i]: its (local, remote) ports) has nothing
    unread. With the writer's send buffer at its minimum (WRITER_SNDBUF), what the proxy can
    find queued at one recv is bounded by that buffer plus a chunk or two: well below a full
    16 KiB buffer (which on the adaptive path would switch the direction to splice), however
    loaded the machine. A direction whose proxy-side send blocks stops reading, and so stops
    getting bytes. Runs until done() (polled every few rounds), every writer took `cap`, or
    limit_s. Returns the bytes each writer took (a prefix of its stream)."""
    n = len(writers)
    views = [memoryview(s) for s in streams]
    sent = [0] * n
    for s in writers:
        s.setblocking(False)
    deadline = time.monotonic() + limit_s
    rounds = 0
    diag = SockDiag()
    try:
        while time.monotonic() < deadline and any(k < cap for k in sent):
            wrote = False
            for i, w in enumerate(writers):
                if sent[i] >= cap or diag.unread(*readers[i]) != 0:
                    continue
                try:
                    sent[i] += w.send(views[i][sent[i]:min(cap, sent[i] + PACED_CHUNK)])
                    wrote = True
                except BlockingIOError:
                    pass
            rounds += 1
            if rounds % 4 == 0 and done():
                break
            if not wrote:
                time.sleep(0.001)
    finally:
        diag.close()
        for s in writers:
            s.settimeout(TIMEOUT)
    return sent


def read_all_to_eof(socks, timeout=30.0):
    """Read every socket to EOF at once (select); returns [(length, sha256)]."""
    hs = [hashlib.sha256() for _ in socks]
    ns = [0] * len(socks)
    live = {s: i for i, s in enumerate(socks)}
    for s in socks:
        s.setblocking(False)
    deadline = time.monotonic() + timeout
    try:
        while live:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no EOF within {timeout}s on {len(live)} socket(s); bytes so far "
                            f"{[ns[i] for i in live.values()]}", pytrace=False)
            r, _, _ = select.select(list(live), [], [], min(left, 1.0))
            for s in r:
                i = live[s]
                try:
                    d = s.recv(262144)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    pytest.fail(f"socket {i} reset after {ns[i]} bytes", pytrace=False)
                if not d:
                    del live[s]
                    continue
                hs[i].update(d)
                ns[i] += len(d)
    finally:
        for s in socks:
            s.settimeout(TIMEOUT)
    return [(ns[i], hs[i].hexdigest()) for i in range(len(socks))]


def exchange(a, b, msg, reply):
    """a sends msg, b reads exactly that and answers reply, a reads exactly that."""
    a.sendall(msg)
    got = cl.recv_exact(b, len(msg))
    assert got == msg, "small message corrupted"
    b.sendall(reply)
    got = cl.recv_exact(a, len(reply))
    assert got == reply, "small reply corrupted"


def small_exchanges(c, t, rng, n=8):
    """n ping-pongs each way with messages of 1 .. 3000 bytes; returns (up, down) byte counts."""
    up = down = 0
    for k in range(n):
        m1 = rng.randbytes(rng.randint(1, 3000))
        m2 = rng.randbytes(rng.randint(1, 3000))
        if k % 2 == 0:
            exchange(c, t, m1, m2)
            up, down = up + len(m1), down + len(m2)
        else:
            exchange(t, c, m1, m2)
            up, down = up + len(m2), down + len(m1)
    return up, down


def client_port(s):
    return s.getsockname()[1]


def log_for(p, port, start=0, timeout=TIMEOUT):
    line = p.wait_access_log(lambda o: str(o.get("client", "")).endswith(f":{port}"),
                             timeout=timeout, start=start)
    assert line is not None, f"no access-log line for the tunnel from port {port}"
    return line


def log_summary(line):
    return line["result"], line["bytes_up"], line["bytes_down"]


def finish_both_ways(c, t):
    """Client half-closes, target sees EOF, target closes, client sees EOF."""
    c.shutdown(socket.SHUT_WR)
    assert cl.recv_all(t) == b"", "unexpected bytes at the end (upload)"
    t.shutdown(socket.SHUT_WR)
    assert cl.recv_all(c) == b"", "unexpected bytes at the end (download)"
    t.close()
    c.close()


def echo_tunnels(r, echo_port, count, rng):
    """`count` sequential tunnels to the echo server, each with a few small echoes; each one,
    once its echoes are back, must wait with both directions on the buffer path."""
    for k in range(count):
        s = open_tunnel(r.p, echo_port)
        for _ in range(3):
            m = rng.randbytes(rng.randint(1, 4000))
            s.sendall(m)
            assert cl.recv_exact(s, len(m)) == m, f"echo tunnel {k}: data corrupted"
        r.wait_ops({OP_RECV: 2}, f"echo tunnel {k} of {count}: both directions on buffers")
        s.shutdown(socket.SHUT_WR)
        assert cl.recv_all(s) == b"", f"echo tunnel {k}: bytes after the echoes"
        s.close()
        r.wait_ops({}, f"echo tunnel {k} of {count} closed")


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def hold(r, tgt, n):
    """n new tunnels whose up direction each holds a buffer in a send the target does not
    take (tiny window, not read), the way back waiting on buffers. Paced writes, so this
    works on the adaptive path too. Returns [(client, target)]."""
    held = [pair(r.p, tgt, c_sndbuf=WRITER_SNDBUF) for _ in range(n)]
    r.wait_ops({OP_RECV: 2 * n}, f"{n} new tunnel(s) on buffers")
    want = {OP_SEND: n, OP_RECV: n}
    readers = [(r.p.socks_port, client_port(c)) for c, _ in held]
    sent = write_paced([c for c, _ in held], readers, [HOLD_DATA] * n, len(HOLD_DATA),
                       Steady(lambda: r.matches(lambda o: o == want)))
    r.wait_ops(want, f"{n} buffer(s) held in blocked sends to the targets, the ways back "
               f"waiting (bytes taken: {sent})")
    return held


def end_held(r, held):
    """The targets reset: each blocked send fails, its buffer comes back, the client is told."""
    for c, t in held:
        rst_close(t)
        assert cl.stream_end(c) in ("eof", "reset"), "client not told its tunnel ended"
        c.close()
    r.wait_ops({}, "the holders ended")


# ---------------------------------------------------------------------------------------------
# 1. pool exhaustion: blocked sends hold the pool; the other tunnels move to splice
N_TUNNELS = 6
FILL_CAP = 8 << 20    # a blocked send first fills the proxy's socket send buffer (see Target)


def fill_until_held(r, writers, readers, streams, what):
    """Paced writes on every tunnel while the receivers do not read, until the ring shows,
    steadily, both buffers of the pool held in blocked sends and every other tunnel on splice
    (its recv found the pool empty: ENOBUFS). Returns the bytes each writer took."""
    n = len(writers)

    def want(o):
        # The writers' directions: 2 SENDs, the n - 2 others on splice. The other directions
        # (no bytes) wait on either path: a spurious wakeup of a recv while the pool is empty
        # makes the kernel reissue it, and ENOBUFS moves that idle direction to splice too.
        spliced, recv = o.get(OP_POLL_ADD, 0), o.get(OP_RECV, 0)
        return (o.get(OP_SEND, 0) == 2 and spliced >= n - 2 and spliced + recv == 2 * n - 2
                and len(o) <= 3)
    sent = write_paced(writers, readers, streams, FILL_CAP, Steady(lambda: r.matches(want)))
    if not r.matches(want):
        diag = SockDiag()
        unread = [diag.unread(*k) for k in readers]
        diag.close()
        r.wait_ops(want, f"{what}: both buffers held in blocked sends and {n - 2} tunnels on "
                   f"splice (bytes taken: {sent}; unread at the proxy: {unread})")
    return sent


def idle_directions(n):
    """n directions waiting for bytes, on buffers or (see fill_until_held) on splice."""
    return lambda o: o.get(OP_SEND, 0) == 0 and o.get(OP_RECV, 0) + o.get(OP_POLL_ADD, 0) == n


def check_streams(got, streams, sent, what):
    for i, (n, h) in enumerate(got):
        assert (n, h) == (sent[i], sha(streams[i][:sent[i]])), (
            f"{what} tunnel {i}: {n} bytes arrived of {sent[i]} sent, or not the same bytes "
            f"(all sent: {sent})")


def exhaust_pool(r, tgt, start, upload):
    """N_TUNNELS tunnels whose receiving end does not read: the writers fill until the pool is
    held, then the receivers read every byte, both sides shut down and the access log counts
    what was sent. upload: clients write to targets; else targets write to clients."""
    if upload:
        pairs = [pair(r.p, tgt, c_sndbuf=WRITER_SNDBUF) for _ in range(N_TUNNELS)]
    else:
        pairs = [pair(r.p, tgt, c_rcvbuf=4096, t_sndbuf=WRITER_SNDBUF, c_mss=SMALL_MSS)
                 for _ in range(N_TUNNELS)]
    clients = [c for c, _ in pairs]
    targets = [t for _, t in pairs]
    what = "upload" if upload else "download"
    try:
        ports = [client_port(c) for c in clients]
        r.wait_ops({OP_RECV: 2 * N_TUNNELS}, f"{what}: every direction of every tunnel on buffers")
        streams = [stream((1000 if upload else 2000) + i, FILL_CAP) for i in range(N_TUNNELS)]
        if upload:
            writers, readers = clients, targets
            watch = [(r.p.socks_port, port) for port in ports]
        else:
            writers, readers = targets, clients
            watch = [(t.getpeername()[1], tgt.port) for t in targets]
        sent = fill_until_held(r, writers, watch, streams, what)
        for w in writers:
            w.shutdown(socket.SHUT_WR)
        check_streams(read_all_to_eof(readers), streams, sent, what)
        r.wait_ops(idle_directions(N_TUNNELS), f"{what}s done, the ways back waiting")
        for x in readers:
            x.shutdown(socket.SHUT_WR)
        for w in writers:
            assert cl.recv_all(w) == b"", f"bytes on the way back of a {what}"
        for i, port in enumerate(ports):
            line = log_for(r.p, port, start)
            want = ("ok", sent[i], 0) if upload else ("ok", 0, sent[i])
            assert log_summary(line) == want, line
        r.wait_ops({}, f"{what} tunnels closed: nothing left on the ring")
    finally:
        for c, t in pairs:
            c.close()
            t.close()


@pytest.mark.parametrize("mode", ["buffers", "adaptive"])
def test_pool_exhaustion_moves_to_splice(relay, servers, mode):
    """Two buffers, six tunnels whose receiver does not read: two tunnels end up holding the
    buffers in blocked sends, the four others get ENOBUFS and splice; when the receivers read,
    every byte of every tunnel arrives in order. Uploads on six tunnels, then downloads on six
    others. Afterwards the pool is whole again: two tunnels can hold both buffers at once,
    and small echoes keep using them."""
    r = relay(mode, buffers=2)
    r.wait_ops({}, "idle before the test")
    start = r.p.mark()
    tgt = Target(rcvbuf=4096, mss=SMALL_MSS)
    pairs = []
    try:
        exhaust_pool(r, tgt, start, upload=True)    # the targets do not read
        exhaust_pool(r, tgt, start, upload=False)   # the clients do not read (small buffers)

        # Both buffers came back: two new tunnels can hold one each, at once.
        pairs = hold(r, tgt, 2)
        end_held(r, pairs)
    finally:
        for c, t in pairs:
            c.close()
            t.close()
        tgt.close()

    # A normal tunnel still works, small and bulk ...
    s = open_tunnel(r.p, servers.echo.port)
    cl.echo_roundtrip(s, os.urandom(4096))
    cl.echo_roundtrip(s, os.urandom(1 << 20))
    s.close()
    r.wait_ops({}, "the extra tunnel closed")
    # ... and 50 tunnels in a row relay small echoes on buffers (with the pool lost, a recv
    # would find it empty and that direction would splice).
    echo_tunnels(r, servers.echo.port, 50, random.Random(7))


@pytest.mark.parametrize("mode", ["buffers", "adaptive"])
def test_splice_on_loan_returns_to_buffers(relay, servers, mode):
    """A direction that found the pool empty splices only while it has to: once the buffers
    are back and it is idle, its next small message goes through a buffer again."""
    r = relay(mode, buffers=2)
    r.wait_ops({}, "idle before the test")
    tgt = Target(rcvbuf=4096, mss=SMALL_MSS)
    s = None
    try:
        held = hold(r, tgt, 2)  # both buffers held in blocked sends
        s = open_tunnel(r.p, servers.echo.port)
        # Both directions find the pool empty: one small echo goes through splice.
        cl.echo_roundtrip(s, b"on loan")
        r.wait_ops(lambda o: o.get(OP_SEND, 0) == 2 and o.get(OP_POLL_ADD, 0) == 2,
                   "the new tunnel's directions splice while the pool is empty")
        for c, t in held:  # as end_held, with our tunnel still open
            rst_close(t)
            assert cl.stream_end(c) in ("eof", "reset"), "client not told its tunnel ended"
            c.close()
        r.wait_ops({OP_POLL_ADD: 2}, "the holders ended, the pool whole again")
        # The next echo wakes each direction once more; idle again, they go back to buffers.
        cl.echo_roundtrip(s, b"back to buffers")
        r.wait_ops({OP_RECV: 2}, "both directions back on buffers")
        for _ in range(5):
            cl.echo_roundtrip(s, os.urandom(1000))
        r.wait_ops({OP_RECV: 2}, "still on buffers after more small echoes")
    finally:
        if s:
            s.close()
        tgt.close()
    r.wait_ops({}, "the tunnel closed")


# ---------------------------------------------------------------------------------------------
# 2. small, bulk, small on one tunnel
BULK = 8 << 20


def bulk(sender, receiver, data):
    t, err = cl.send_in_background(sender, data)
    got = cl.recv_exact(receiver, len(data))
    t.join(TIMEOUT)
    assert not err, f"bulk send failed: {err}"
    assert len(got) == len(data) and sha(got) == sha(data), "bulk transfer corrupted"


@pytest.mark.parametrize("mode", ["adaptive", "splice", "buffers"])
def test_small_then_bulk_then_small(relay, mode):
    """Small exchanges, 8 MiB up, small, 8 MiB down, small, on one tunnel. adaptive: each
    direction leaves the buffer path with its bulk transfer, not before, and stays on splice;
    buffers: never leaves it; splice: never on it."""
    r = relay(mode)
    r.wait_ops({}, "idle before the test")
    start = r.p.mark()
    rng = random.Random(hash(mode) & 0xffff)
    S, P = OP_POLL_ADD, OP_RECV
    expect = {
        #            start            after bulk up        after bulk down
        "adaptive": ({P: 2},          {S: 1, P: 1},        {S: 2}),
        "buffers":  ({P: 2},          {P: 2},              {P: 2}),
        "splice":   ({S: 2},          {S: 2},              {S: 2}),
    }[mode]
    tgt = Target()
    try:
        c, t = pair(r.p, tgt)
        r.wait_ops(expect[0], "new tunnel")
        u, d = small_exchanges(c, t, rng)
        r.wait_ops(expect[0], "after small exchanges")

        up = stream(31, BULK)
        bulk(c, t, up)
        r.wait_ops(expect[1], "after the bulk upload")
        u2, d2 = small_exchanges(c, t, rng)

        down = stream(32, BULK)
        bulk(t, c, down)
        r.wait_ops(expect[2], "after the bulk download")
        u3, d3 = small_exchanges(c, t, rng)
        r.wait_ops(expect[2], "after the last small exchanges")

        port = client_port(c)
        finish_both_ways(c, t)
        line = log_for(r.p, port, start)
        assert line["result"] == "ok", line
        assert line["bytes_up"] == u + u2 + u3 + BULK, line
        assert line["bytes_down"] == d + d2 + d3 + BULK, line
        r.wait_ops({}, "tunnel closed")
    finally:
        tgt.close()


# ---------------------------------------------------------------------------------------------
# 3. half-close on the buffer path
@pytest.mark.parametrize("mode", ["adaptive", "buffers", "splice"])
@pytest.mark.parametrize("first", ["client", "target"])
def test_half_close(relay, mode, first):
    """One side sends a small message and shuts its write half; the other reads it and EOF,
    then answers (three messages, read one by one: the open direction keeps relaying) and
    closes; the first side reads the answers and EOF."""
    r = relay(mode)
    r.wait_ops({}, "idle before the test")
    start = r.p.mark()
    on = OP_POLL_ADD if mode == "splice" else OP_RECV
    tgt = Target()
    try:
        c, t = pair(r.p, tgt)
        port = client_port(c)
        a, b = (c, t) if first == "client" else (t, c)
        r.wait_ops({on: 2}, "new tunnel")
        msg = b"half-close " + os.urandom(700)
        a.sendall(msg)
        a.shutdown(socket.SHUT_WR)
        assert cl.recv_exact(b, len(msg)) == msg
        assert cl.recv_all(b, timeout=TIMEOUT) == b"", "no EOF after the message"
        r.wait_ops({on: 1}, f"{first} half-closed: one direction done, the other waiting")
        answers = [os.urandom(n) for n in (1, 1500, 9000)]
        for k, ans in enumerate(answers):
            b.sendall(ans)
            assert cl.recv_exact(a, len(ans)) == ans, f"answer {k} after the half-close"
        b.close()
        assert cl.recv_all(a) == b"", "no EOF after the answers"
        a.close()
        line = log_for(r.p, port, start)
        assert line["result"] == "ok", line
        n_ans = sum(map(len, answers))
        want = (len(msg), n_ans) if first == "client" else (n_ans, len(msg))
        assert (line["bytes_up"], line["bytes_down"]) == want, line
        r.wait_ops({}, "tunnel closed")
    finally:
        tgt.close()


# ---------------------------------------------------------------------------------------------
# 4. tunnels that end while the proxy holds a buffer in a blocked send
def poke_until_closed(t, what):
    """The target writes a byte every 20 ms until its send fails: the proxy ended the tunnel
    and reset the target side (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            t.send(b"p")
        except (ConnectionResetError, BrokenPipeError):
            return
        time.sleep(0.02)
    pytest.fail(f"{what}: the proxy did not end the tunnel within {TIMEOUT}s", pytrace=False)


ENDINGS = ("client_rst", "client_fin", "target_rst")


def test_tunnel_ends_while_buffer_held(relay, servers):
    """Ten times on a 2-buffer pool (more than the pool): a tunnel holds a buffer in a blocked
    send, then ends: the client resets or closes and the target's next bytes make the proxy
    notice (the tunnel finishes with the send still pending: cancelled, the buffer comes back
    with its completion), or the target resets (the send fails). Each new tunnel must get a
    buffer again; afterwards both buffers can be held at once and small echoes use them."""
    r = relay("buffers", buffers=2)
    r.wait_ops({}, "idle before the test")
    start = r.p.mark()
    tgt = Target(rcvbuf=4096, mss=SMALL_MSS)
    try:
        for k in range(10):
            ending = ENDINGS[k % len(ENDINGS)]
            what = f"round {k} ({ending})"
            [(c, t)] = hold(r, tgt, 1)
            port = client_port(c)
            if ending == "client_rst":
                rst_close(c)
                poke_until_closed(t, what)
            elif ending == "client_fin":
                c.close()
                poke_until_closed(t, what)
            else:
                rst_close(t)
                assert cl.stream_end(c) in ("eof", "reset"), f"{what}: client not told"
            line = log_for(r.p, port, start)
            assert line["result"] == "reset", (what, line)
            r.wait_ops({}, f"{what}: every op of the tunnel gone")
            c.close()
            t.close()

        # Both buffers are free: two tunnels can hold one each, at once.
        end_held(r, hold(r, tgt, 2))
    finally:
        tgt.close()
    echo_tunnels(r, servers.echo.port, 5, random.Random(11))


def test_idle_timeout_while_buffer_held(relay, servers):
    """The idle timeout ends tunnels whose sends hold buffers (the target never reads): the
    sends are cancelled and their buffers come back. Twice, with the whole 2-buffer pool held."""
    r = relay("buffers", buffers=2, idle_ms=1000)
    r.wait_ops({}, "idle before the test")
    start = r.p.mark()
    tgt = Target(rcvbuf=4096, mss=SMALL_MSS)
    try:
        for k in range(2):
            held = hold(r, tgt, 2)
            for c, t in held:
                line = log_for(r.p, client_port(c), start)
                assert line["result"] == "idle_timeout", line
                assert cl.stream_end(c) in ("eof", "reset"), f"round {k}: client not told"
            r.wait_ops({}, f"round {k}: every op of the timed-out tunnels gone")
            for c, t in held:
                c.close()
                t.close()
    finally:
        tgt.close()
    echo_tunnels(r, servers.echo.port, 3, random.Random(13))


# ---------------------------------------------------------------------------------------------
# 5. a half-closed client that reads a big answer slowly
def sq_head(pid):
    """Submission-queue head of pid's io_uring (SQEs the kernel has consumed so far)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[io_uring]":
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    m = re.search(r"^SqHead:\s*(\d+)", f.read(), re.M)
            except OSError:
                continue
            if m:
                return int(m.group(1))
        time.sleep(0.002)
    pytest.skip("no SqHead in the io_uring fdinfo")


@pytest.mark.parametrize("mode", ["buffers", "adaptive", "splice"])
def test_half_closed_client_reading_slowly(relay, mode):
    """The client sends its request and shuts its write half (nc -N, a request/response
    client); the target answers 16 MiB; the client reads nothing for a while, then all of
    it. While the way down waits for the client, the worker must wait, not spin: it submits
    only a handful of requests per second. Then every byte arrives."""
    r = relay(mode)
    r.wait_ops({}, "idle before the test")
    start = r.p.mark()
    tgt = Target()
    try:
        c, t = pair(r.p, tgt, c_rcvbuf=4096)
        port = client_port(c)
        c.sendall(b"GET /big\n")
        c.shutdown(socket.SHUT_WR)
        assert cl.recv_exact(t, 9) == b"GET /big\n"
        assert cl.recv_all(t) == b"", "no EOF after the request"
        answer = stream(77, 16 << 20)
        th, err = cl.send_in_background(t, answer, then_shutdown=True)
        # Bytes reach the client's (small, full) receive buffer: the way down now waits for it.
        assert wait_until(lambda: inq(c) > 0, TIMEOUT, 0.01), "no bytes reached the client"
        time.sleep(0.3)
        h0 = sq_head(r.p.pid)
        time.sleep(1.0)
        submitted = sq_head(r.p.pid) - h0
        got = cl.recv_exact(c, len(answer))
        th.join(TIMEOUT)
        assert not err, err
        assert sha(got) == sha(answer), "the answer was corrupted"
        assert cl.recv_all(c) == b""
        line = log_for(r.p, port, start)
        assert log_summary(line) == ("ok", 9, len(answer)), line
        c.close()
        t.close()
        r.wait_ops({}, "tunnel closed")
        # io_uring completes a POLLOUT wait on EPOLLRDHUP too: a half-closed client must not
        # turn the splice path's wait into a busy loop (relay/splice_relay.cpp, "nudge").
        assert submitted < 2000, (f"[{mode}] the worker submitted {submitted} requests in the "
                                  f"second it waited for a half-closed client to read")
    finally:
        tgt.close()
