"""Issue 4's reload storm: while client load runs (LOAD_THREADS threads doing SOCKS5 connect +
4 KiB echo + close in a loop, and two long-lived tunnels streaming data), 100 reloads
(`{"cmd":"reload"}` on the control socket alternating with SIGHUP) and 100 `set-proxy` edits
(alice toggled between a microsocks upstream and direct) happen. Not one client connection may
fail, no long-lived tunnel may stall or break (sha256 of everything echoed back), every reload
must answer ok and the generation must advance by exactly the number of changes.

The figures (connections completed, reloads and edits done, duration) are printed: run with -s."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from clients import connect, recv_exact, socks5_open
from harness import PASSWORDS
from servers import det_chunks, free_port

pytestmark = pytest.mark.uringproxy_only

LOAD_THREADS = 8
ECHO_SIZE = 4096
RELOADS = 100                 # half {"cmd":"reload"}, half SIGHUP
EDITS = 100                   # set-proxy alice ms / null, alternating
STORM_SPREAD_S = 15.0         # the 200 changes are spread over at least this long
STORM_BOUND_S = 45.0          # ... and must be done within this long
STALL_S = 5.0                 # a long-lived tunnel with no bytes back for this long has stalled
OP_TIMEOUT = 10.0             # one control request or one SIGHUP taking effect
LONG_CHUNK = 16384
LONG_INTERVAL = 0.01          # ~1.6 MB/s per long-lived tunnel
MAX_CONNECTIONS = 200000      # hard bound on the load, whatever the machine's speed
SOCKET_REL = "ctl/control.sock"
UPSTREAM = "ms"


class Control:
    """One JSON-lines connection to the control socket (reconnects if the daemon closes it)."""

    def __init__(self, path):
        self.path = str(path)
        self.s = None
        self.buf = b""

    def _open(self):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(OP_TIMEOUT)
        self.s.connect(self.path)
        self.buf = b""

    def call(self, obj):
        for attempt in (0, 1):
            if self.s is None:
                self._open()
            try:
                self.s.sendall(json.dumps(obj).encode() + b"\n")
                while b"\n" not in self.buf:
                    d = self.s.recv(65536)
                    if not d:
                        raise EOFError("control socket closed")
                    self.buf += d
                line, _, self.buf = self.buf.partition(b"\n")
                return json.loads(line)
            except (EOFError, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.s is not None:
            self.s.close()
            self.s = None


def wait_socket(path, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                c = Control(path)
                ans = c.call({"cmd": "status"})
                c.close()
                if ans.get("ok"):
                    return
            except OSError:
                pass
        assert proc.alive(), "daemon died before its control socket answered"
        time.sleep(0.05)
    raise AssertionError(f"control socket {path} not answering within {timeout}s")


def start_microsocks():
    port = free_port()
    p = subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    p.wait(5)
    raise RuntimeError("microsocks did not come up")


# ---------------------------------------------------------------------------------------------
class Load:
    """LOAD_THREADS threads: SOCKS5 connect, 4 KiB echo, close, as fast as they can."""

    def __init__(self, proxy_port, echo_port):
        self.proxy_port = proxy_port
        self.echo_port = echo_port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done = 0
        self.failures = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True,
                                         name=f"load-{i}") for i in range(LOAD_THREADS)]
        self.payload = os.urandom(ECHO_SIZE)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _one(self, user):
        r = socks5_open(self.proxy_port, "127.0.0.1", self.echo_port, user=user,
                        pw=PASSWORDS[user])
        try:
            if r.auth_status != 0 or r.rep != 0:
                raise AssertionError(f"refused: {r}")
            r.sock.sendall(self.payload)
            got = recv_exact(r.sock, ECHO_SIZE)
            if got != self.payload:
                raise AssertionError("echo mismatch")
        finally:
            r.sock.close()

    def _run(self, i):
        user = "alice" if i % 2 == 0 else "bob"  # alice's route is the one being toggled
        while not self.stop.is_set():
            try:
                self._one(user)
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                with self.lock:
                    self.failures.append((time.monotonic(), user, repr(e)))
                continue
            with self.lock:
                self.done += 1
                if self.done >= MAX_CONNECTIONS:
                    self.stop.set()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        return [t.name for t in self.threads if t.is_alive()]


class LongTunnel:
    """A long-lived SOCKS5 tunnel to the echo server: a sender streams deterministic bytes at
    about 1.6 MB/s, a receiver hashes what comes back and notes the longest gap between reads."""

    def __init__(self, proxy_port, echo_port, user):
        self.user = user
        r = socks5_open(proxy_port, "127.0.0.1", echo_port, user=user, pw=PASSWORDS[user])
        assert (r.auth_status, r.rep) == (0, 0), f"long tunnel for {user}: {r}"
        self.s = r.sock
        self.s.settimeout(None)
        self.local_port = self.s.getsockname()[1]
        self.stop = threading.Event()
        self.sent = 0
        self.recvd = 0
        self.sent_sha = hashlib.sha256()
        self.recv_sha = hashlib.sha256()
        self.last_rx = time.monotonic()
        self.max_gap = 0.0
        self.error = None
        self.tx = threading.Thread(target=self._send, daemon=True, name=f"long-tx-{user}")
        self.rx = threading.Thread(target=self._recv, daemon=True, name=f"long-rx-{user}")

    def start(self):
        self.tx.start()
        self.rx.start()
        return self

    def _send(self):
        try:
            stream = det_chunks(1 << 40, LONG_CHUNK)
            while not self.stop.is_set():
                c = next(stream)
                self.s.sendall(c)
                self.sent_sha.update(c)
                self.sent += len(c)
                time.sleep(LONG_INTERVAL)
            # microsocks (alice's upstream) closes both ways at the first EOF, dropping what the
            # echo has not sent back yet: let the echo catch up before half-closing.
            deadline = time.monotonic() + 30.0
            while self.recvd < self.sent and time.monotonic() < deadline and self.error is None:
                time.sleep(0.01)
            self.s.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001
            self.error = self.error or f"send: {e!r}"

    def _recv(self):
        try:
            while True:
                d = self.s.recv(262144)
                now = time.monotonic()
                self.max_gap = max(self.max_gap, now - self.last_rx)
                self.last_rx = now
                if not d:
                    return
                self.recv_sha.update(d)
                self.recvd += len(d)
        except Exception as e:  # noqa: BLE001
            self.error = self.error or f"recv: {e!r}"

    def gap_now(self):
        return time.monotonic() - self.last_rx

    def finish(self, timeout=30.0):
        self.stop.set()
        self.tx.join(timeout)
        self.rx.join(timeout)
        self.s.close()
        return not (self.tx.is_alive() or self.rx.is_alive())


# ---------------------------------------------------------------------------------------------
@pytest.fixture
def upstream():
    if not shutil.which("microsocks"):
        pytest.skip("microsocks is not installed (Debian package `microsocks`)")
    p, port = start_microsocks()
    yield port
    p.terminate()
    p.wait(10)


def test_reload_storm_under_load(fresh_proxy, servers, upstream):
    # alice starts on the upstream; bob is direct.
    from harness import users_doc
    users = users_doc()
    for u in users["users"]:
        if u["username"] == "alice":
            u["external_proxy_id"] = UPSTREAM
    p = fresh_proxy({"proxies_file": "external_proxy.json", "control": {"socket": SOCKET_REL},
                     "acl": {"deny_private": False}, "access_log": "off"},
                    users, start=False)
    p.workdir.mkdir(parents=True, exist_ok=True)
    pf = p.workdir / "external_proxy.json"
    pf.write_text(json.dumps({"proxies": [
        {"id": UPSTREAM, "name": "microsocks", "type": "socks5", "address": "127.0.0.1",
         "port": upstream, "enabled": True}]}))
    os.chmod(pf, 0o600)
    p.start()
    sock_path = p.workdir / SOCKET_REL
    wait_socket(sock_path, p)
    ctl = Control(sock_path)

    def status():
        ans = ctl.call({"cmd": "status"})
        assert ans.get("ok"), ans
        return ans

    g0 = status()["generation"]
    longs = [LongTunnel(p.socks_port, servers.echo.port, "alice").start(),
             LongTunnel(p.socks_port, servers.echo.port, "bob").start()]
    load = Load(p.socks_port, servers.echo.port).start()
    time.sleep(1.0)  # load at full rate before the first change
    done_before = load.done

    gen = g0
    problems = []
    reloads_ctl = reloads_hup = edits = 0
    lat = {"reload": [], "sighup": [], "set-proxy": []}
    alice_proxy = UPSTREAM
    stalls = []
    ops = []
    for i in range(max(RELOADS, EDITS)):
        if i < RELOADS:
            ops.append("reload" if i % 2 == 0 else "sighup")
        if i < EDITS:
            ops.append("set-proxy")
    t_start = time.monotonic()
    storm_deadline = t_start + STORM_BOUND_S
    for k, op in enumerate(ops):
        if time.monotonic() > storm_deadline:
            problems.append(f"storm not done within {STORM_BOUND_S}s: {k} of {len(ops)} changes")
            break
        # pace: change k is not made before k * spread / len(ops) seconds
        wait = t_start + k * STORM_SPREAD_S / len(ops) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        t0 = time.monotonic()
        if op == "reload":
            ans = ctl.call({"cmd": "reload"})
            if not ans.get("ok") or ans.get("generation") != gen + 1:
                problems.append(f"reload #{reloads_ctl + reloads_hup + 1}: {ans} (want ok, "
                                f"generation {gen + 1})")
                gen = ans.get("generation", gen)
            else:
                gen += 1
                reloads_ctl += 1
        elif op == "sighup":
            os.kill(p.pid, signal.SIGHUP)
            deadline = t0 + OP_TIMEOUT
            g = gen
            while time.monotonic() < deadline:
                g = status()["generation"]
                if g != gen:
                    break
                time.sleep(0.002)
            if g != gen + 1:
                problems.append(f"SIGHUP #{reloads_ctl + reloads_hup + 1}: generation {gen} -> "
                                f"{g} within {OP_TIMEOUT}s (want {gen + 1})")
                gen = g
            else:
                gen += 1
                reloads_hup += 1
        else:
            want = None if alice_proxy else UPSTREAM
            ans = ctl.call({"cmd": "set-proxy", "username": "alice", "proxy": want})
            if (not ans.get("ok") or ans.get("generation") != gen + 1
                    or ans.get("external_proxy_id") != want):
                problems.append(f"set-proxy alice {want}: {ans} (want ok, generation {gen + 1})")
                gen = ans.get("generation", gen)
            else:
                gen += 1
                edits += 1
                alice_proxy = want
        lat[op].append(time.monotonic() - t0)
        for lt in longs:
            if lt.gap_now() > STALL_S:
                stalls.append(f"{lt.user}'s long tunnel: nothing back for {lt.gap_now():.1f}s "
                              f"during change {k}")
        if not p.alive():
            problems.append(f"daemon died during change {k} ({op})")
            break
    storm_s = time.monotonic() - t_start
    done_in_storm = load.done - done_before
    time.sleep(1.0)  # load goes on after the last change

    # The long-lived tunnels are still listed, with their route unchanged.
    conns = ctl.call({"cmd": "connections"})
    final = status()
    stats = ctl.call({"cmd": "stats"})
    stuck = load.finish()
    total_s = time.monotonic() - t_start
    for lt in longs:
        if lt.gap_now() > STALL_S:
            stalls.append(f"{lt.user}'s long tunnel: nothing back for {lt.gap_now():.1f}s at the end")
    long_ok = [lt.finish() for lt in longs]
    ctl.close()

    print(f"\nreload storm: {len(ops)} changes ({reloads_ctl} control reloads, {reloads_hup} "
          f"SIGHUP reloads, {edits} set-proxy edits) in {storm_s:.1f}s; generation {g0} -> "
          f"{final['generation']}")
    print(f"  load: {LOAD_THREADS} threads, {load.done} connections completed in {total_s + 1:.1f}s "
          f"({done_in_storm} during the storm, {done_in_storm / storm_s:.0f}/s), "
          f"{len(load.failures)} failed")
    for op, xs in lat.items():
        if xs:
            print(f"  {op}: n={len(xs)} mean {1000 * sum(xs) / len(xs):.1f} ms, "
                  f"max {1000 * max(xs):.1f} ms")
    for lt in longs:
        print(f"  long tunnel {lt.user}: sent {lt.sent} B, echoed {lt.recvd} B, "
              f"longest gap {lt.max_gap:.2f}s, error {lt.error}")
    if stats.get("ok"):
        print(f"  daemon stats: connections_total {stats.get('connections_total')}, "
              f"active {stats.get('connections_active')}")

    assert not problems, "\n".join(problems)
    assert not load.failures, (f"{len(load.failures)} client connections failed of "
                               f"{load.done + len(load.failures)}; first ones: "
                               f"{load.failures[:10]}")
    assert not stuck, f"load threads did not finish: {stuck}"
    assert (reloads_ctl, reloads_hup, edits) == (RELOADS // 2, RELOADS - RELOADS // 2, EDITS)
    assert final["generation"] == g0 + RELOADS + EDITS, (g0, final)
    assert not stalls, "\n".join(stalls)
    for lt, ok in zip(longs, long_ok):
        assert ok and lt.error is None, f"{lt.user}'s long tunnel broke: {lt.error}"
        assert lt.recvd == lt.sent, f"{lt.user}: echoed {lt.recvd} of {lt.sent} bytes"
        assert lt.recv_sha.hexdigest() == lt.sent_sha.hexdigest(), f"{lt.user}: sha256 differs"
        assert lt.max_gap < STALL_S, f"{lt.user}'s long tunnel stalled {lt.max_gap:.1f}s"
        assert lt.sent > 1 << 20, f"{lt.user}'s long tunnel moved only {lt.sent} bytes"
    assert conns.get("ok"), conns
    for lt, route in zip(longs, (UPSTREAM, "direct")):
        mine = [c for c in conns["connections"]
                if str(c.get("client", "")).endswith(f":{lt.local_port}")]
        assert len(mine) == 1, (lt.user, lt.local_port, conns["connections"])
        assert mine[0]["user"] == lt.user and mine[0]["route"] == route, mine[0]
    # The file on disk is whole and says what the last edit said.
    doc = json.loads((p.workdir / "users.json").read_text())
    alice = [u for u in doc["users"] if u["username"] == "alice"][0]
    assert alice.get("external_proxy_id") == alice_proxy, alice
    assert p.alive()
