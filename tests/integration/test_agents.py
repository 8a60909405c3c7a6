"""Reverse agents (issue 12, docs/agent-protocol.md), gateway side: a uringproxy gateway with an
`agent` listener and agents_file, and agents as separate processes (tests/integration/
fake_agent.py, a Python agent speaking the protocol) whose egress is bound to their own
loopback address (127.0.0.2, 127.0.0.3), so a target that reports the peer it saw tells which
agent carried a tunnel. Every wait is on an event, with generous bounds."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clients import http_connect, recv_exact, socks5_open
from harness import PASSWORDS
from servers import wait_until

pytestmark = pytest.mark.uringproxy_only

HERE = Path(__file__).resolve().parent
SECRETS = {"home-1": "agent-one-secret-Xq4", "home-2": "agent-two-secret-Wp8",
           "home-off": "agent-off-secret-Lr2"}
SOURCES = {"home-1": "127.0.0.2", "home-2": "127.0.0.3", "home-off": "127.0.0.4"}


def sha512(pw):
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw.encode(),
                          capture_output=True, check=True).stdout.decode().strip()


class WhoServer:
    """Sends "PEER <ip>\\n" on connect, then echoes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stop:
            try:
                c, addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, addr), daemon=True).start()

    @staticmethod
    def _serve(c, addr):
        try:
            c.settimeout(120)
            c.sendall(f"PEER {addr[0]}\n".encode())
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()


def read_peer(s, already=b""):
    line = already
    while b"\n" not in line:
        d = s.recv(1)
        if not d:
            raise EOFError(f"closed after {line!r}")
        line += d
    assert line.startswith(b"PEER ") and line.endswith(b"\n"), line
    return line[5:].strip().decode()


class AgentProcess:
    def __init__(self, gw, id_, secret=None, mode="normal", idle=4, allow=("127.0.0.0/8",)):
        args = [sys.executable, str(HERE / "fake_agent.py"), "--gateway",
                f"127.0.0.1:{gw.agent_port}", "--id", id_, "--secret",
                secret if secret is not None else SECRETS[id_], "--ca", str(gw.cert),
                "--source", SOURCES.get(id_, "127.0.0.5"), "--idle", str(idle), "--mode", mode]
        for a in allow:
            args += ["--allow", a]
        self.lines = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for ln in self.proc.stdout:
            self.lines.append(ln.decode(errors="replace").rstrip())

    def ready_count(self):
        return sum(1 for ln in self.lines if ln == "agent ready")

    def wait_ready(self, n=1, timeout=30):
        assert wait_until(lambda: self.ready_count() >= n, timeout), \
            f"agent not ready ({n}): {self.lines[-10:]}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def who():
    w = WhoServer()
    yield w
    w.close()


@pytest.fixture
def gateway(fresh_proxy, tmp_path_factory):
    """A factory for a gateway with an agent listener, agents home-1 and home-2 in group
    "residential" (and home-off, disabled)."""
    agents_made = []

    def make(policy="round_robin", extra=None, start=True):
        d = tmp_path_factory.mktemp("gw-certs")
        cert, key = d / "gw.pem", d / "gw.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "3", "-subj",
                        "/CN=gw.test", "-addext", "subjectAltName=DNS:gw.test",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        from servers import free_port
        agent_port = free_port()
        over = {"agents_file": "agents.json",
                "groups": {"residential": {"policy": policy}},
                "upstream": {"connect_timeout_ms": 4000, "attempts": 2}}
        p = fresh_proxy(dict(over, **(extra or {})), start=False)
        p.config["listeners"].append({"name": "agents", "protocol": "agent",
                                      "listen": f"127.0.0.1:{agent_port}",
                                      "tls": {"cert": str(cert), "key": str(key)}})
        p.agent_port, p.cert = agent_port, cert
        agents = [{"id": "home-1", "secret": sha512(SECRETS["home-1"]), "group": "residential"},
                  {"id": "home-2", "secret": sha512(SECRETS["home-2"]), "group": "residential"},
                  {"id": "home-off", "secret": sha512(SECRETS["home-off"]),
                   "group": "residential", "enabled": False}]
        f = p.workdir / "agents.json"
        f.write_text(json.dumps({"agents": agents}))
        f.chmod(0o600)
        if start:
            p.start()
        return p

    def agent(gw, id_, **kw):
        a = AgentProcess(gw, id_, **kw)
        agents_made.append(a)
        return a

    make.agent = agent
    yield make
    for a in agents_made:
        a.kill()


def via_socks(gw, user, target_port, payload=b"hello"):
    r = socks5_open(gw.socks_port, "127.0.0.1", target_port, user=user,
                    pw=PASSWORDS[user.split(".")[0]])
    if r.rep != 0:
        r.sock.close()
        return r.rep, None
    s = r.sock
    try:
        peer = read_peer(s)
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload
    finally:
        s.close()
    return 0, peer


def via_http(gw, user, target_port, payload=b"hello"):
    c, r = http_connect(gw.http_port, "127.0.0.1", target_port, user=user,
                        pw=PASSWORDS[user.split(".")[0]])
    if r.status != 200:
        c.close()
        return r.status, None
    s = c.s
    try:
        peer = read_peer(s, bytes(c.buf))
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload
    finally:
        c.close()
    return 200, peer


def test_round_robin_across_two_agents_socks_and_http(gateway, who):
    gw = gateway()
    a1, a2 = gateway.agent(gw, "home-1"), gateway.agent(gw, "home-2")
    a1.wait_ready()
    a2.wait_ready()
    seen = []
    for i in range(8):
        code, peer = (via_socks if i % 2 == 0 else via_http)(gw, "alice.residential", who.port)
        assert code in (0, 200), (i, code)
        seen.append(peer)
    assert set(seen) == {"127.0.0.2", "127.0.0.3"}, seen
    logs = gw.wait_access_log(lambda r: r.get("route") == "agent:home-2", timeout=20)
    assert logs, "no access-log line with route agent:home-2"
    routes = {r["route"] for r in gw.access_logs() if r.get("user") == "alice"}
    assert routes <= {"agent:home-1", "agent:home-2"}, routes


def test_hash_user_is_sticky_across_agents(gateway, who):
    gw = gateway(policy="hash_user")
    a1, a2 = gateway.agent(gw, "home-1"), gateway.agent(gw, "home-2")
    a1.wait_ready()
    a2.wait_ready()
    for user in ("alice", "bob", "carol"):
        seen = {via_socks(gw, f"{user}.residential", who.port)[1] for _ in range(4)}
        assert len(seen) == 1 and seen <= {"127.0.0.2", "127.0.0.3"}, (user, seen)


def test_kill_agent_mid_transfer(gateway, who):
    gw = gateway()
    a1, a2 = gateway.agent(gw, "home-1"), gateway.agent(gw, "home-2")
    a1.wait_ready()
    a2.wait_ready()
    # Open tunnels until one goes through each agent; keep them open.
    held = {}
    for _ in range(10):
        r = socks5_open(gw.socks_port, "127.0.0.1", who.port, user="alice.residential",
                        pw=PASSWORDS["alice"])
        assert r.rep == 0, r
        peer = read_peer(r.sock)
        if peer in held:
            r.sock.close()
        else:
            held[peer] = r.sock
        if len(held) == 2:
            break
    assert set(held) == {"127.0.0.2", "127.0.0.3"}, held
    victim, survivor = held["127.0.0.2"], held["127.0.0.3"]
    victim.sendall(b"x" * 1000)
    assert recv_exact(victim, 1000) == b"x" * 1000
    a1.kill()
    # The user of the killed agent gets a clean close (EOF or reset), within a bound.
    victim.settimeout(20)
    try:
        while victim.recv(65536):
            pass
    except (ConnectionResetError, OSError):
        pass
    victim.close()
    # The other tunnel keeps going, and new tunnels all leave through home-2.
    survivor.sendall(b"still here")
    assert recv_exact(survivor, 10) == b"still here"
    survivor.close()
    for _ in range(4):
        code, peer = via_socks(gw, "alice.residential", who.port)
        assert (code, peer) == (0, "127.0.0.3")
    assert gw.alive()


def test_gateway_restart_agents_come_back(gateway, who):
    gw = gateway()
    a1, a2 = gateway.agent(gw, "home-1"), gateway.agent(gw, "home-2")
    a1.wait_ready()
    a2.wait_ready()
    assert via_socks(gw, "alice.residential", who.port)[0] == 0
    assert gw.stop() == 0
    gw.stopped_on_purpose = False
    gw.start()
    t0 = time.monotonic()
    a1.wait_ready(2, timeout=30)
    a2.wait_ready(2, timeout=30)
    assert time.monotonic() - t0 < 30
    seen = {via_socks(gw, "alice.residential", who.port)[1] for _ in range(6)}
    assert seen == {"127.0.0.2", "127.0.0.3"}, seen


@pytest.mark.parametrize("case", ["wrong-secret", "unknown-id", "disabled"])
def test_refused_agents_never_join(gateway, who, case):
    gw = gateway()
    id_, secret = {"wrong-secret": ("home-1", "not-the-secret"),
                   "unknown-id": ("nobody", "whatever-secret"),
                   "disabled": ("home-off", SECRETS["home-off"])}[case]
    a = gateway.agent(gw, id_, secret=secret)
    assert wait_until(lambda: any("agent refused" in ln for ln in a.lines), 30), a.lines
    assert a.ready_count() == 0
    # The group has no member: group_fallback default -> the user's own route (direct).
    code, peer = via_socks(gw, "alice.residential", who.port)
    assert (code, peer) == (0, "127.0.0.1")
    assert "not-the-secret" not in gw.output_text()


def test_no_member_left_rejects_with_group_fallback_reject(gateway, who):
    gw = gateway(extra={"routing": {"on_failure": "reject", "group_fallback": "reject"}})
    r = socks5_open(gw.socks_port, "127.0.0.1", who.port, user="alice.residential",
                    pw=PASSWORDS["alice"])
    assert r.rep == 0x01
    r.sock.close()


def test_agent_acl_denies_private_target(gateway, who):
    gw = gateway()
    a = gateway.agent(gw, "home-1", allow=())  # deny_private, as an agent has by default
    a.wait_ready()
    assert via_socks(gw, "alice.residential", who.port)[0] == 0x02
    assert via_http(gw, "alice.residential", who.port)[0] == 403
    assert gw.wait_access_log(lambda r: r.get("route") == "agent:home-1"
                              and r.get("result") == "denied", timeout=20)


def test_refused_target_through_agent(gateway, who):
    from servers import closed_port
    gw = gateway()
    gateway.agent(gw, "home-1").wait_ready()
    assert via_socks(gw, "alice.residential", closed_port())[0] == 0x05


def test_silent_agent_times_out(gateway, who):
    gw = gateway(extra={"upstream": {"connect_timeout_ms": 1500, "attempts": 1}})
    gateway.agent(gw, "home-1", mode="silent").wait_ready()
    t0 = time.monotonic()
    assert via_socks(gw, "alice.residential", who.port)[0] == 0x06
    assert time.monotonic() - t0 < 20
    assert via_http(gw, "alice.residential", who.port)[0] == 504


def test_garbage_from_agent_and_to_gateway(gateway, who):
    gw = gateway(extra={"upstream": {"connect_timeout_ms": 3000, "attempts": 1}})
    gateway.agent(gw, "home-1", mode="garbage").wait_ready()
    assert via_socks(gw, "alice.residential", who.port)[0] == 0x01
    # Garbage to the agent listener: a TLS client that sends junk frames is closed.
    import ssl
    ctx = ssl.create_default_context(cafile=str(gw.cert))
    ctx.check_hostname = False
    for junk in (b"\x00\x00\x00", b"\x01\xff\xff" + b"A" * 64, b"\x01\x00\x05UPAGX",
                 b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", gw.agent_port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="gw.test") as s:
                s.sendall(junk)
                got = b""
                try:
                    while True:
                        d = s.recv(4096)
                        if not d:
                            break
                        got += d
                except (ConnectionResetError, ssl.SSLError, OSError):
                    pass
                # An ERROR frame (type 7) or a plain close, never anything else.
                assert got == b"" or got[0] == 7, (junk, got)
    # Still serving.
    assert via_socks(gw, "alice", who.port) == (0, "127.0.0.1")


def test_two_hundred_concurrent_tunnels(gateway, who):
    gw = gateway()
    a1, a2 = gateway.agent(gw, "home-1", idle=16), gateway.agent(gw, "home-2", idle=16)
    a1.wait_ready()
    a2.wait_ready()
    n = 200
    results = [None] * n

    def one(i):
        try:
            r = socks5_open(gw.socks_port, "127.0.0.1", who.port, user="alice.residential",
                            pw=PASSWORDS["alice"], timeout=60)
            if r.rep != 0:
                results[i] = f"rep {r.rep}"
                return
            with r.sock as s:
                s.settimeout(60)
                peer = read_peer(s)
                msg = f"tunnel {i} ".encode() * 20
                s.sendall(msg)
                assert recv_exact(s, len(msg)) == msg
                results[i] = peer
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    bad = [r for r in results if r not in ("127.0.0.2", "127.0.0.3")]
    assert not bad, bad[:5]
    assert {"127.0.0.2", "127.0.0.3"} <= set(results)


def test_ctl_agents_metrics_kick_disable_add(gateway, who):
    import urllib.request
    from ctl_helpers import run_ctl
    from servers import free_port
    mport = free_port()
    gw = gateway(extra={"control": {"socket": "run/control.sock"},
                        "metrics": {"listen": f"127.0.0.1:{mport}"}})
    sock = str(gw.workdir / "run" / "control.sock")

    def ctl(*args, input=None):
        return run_ctl(["--socket", sock] + list(args), input=input)

    def agents():
        r = ctl("--json", "agents")
        assert r.rc == 0, r
        return {a["id"]: a for a in r.json()["agents"]}

    a1 = gateway.agent(gw, "home-1")
    a1.wait_ready()
    assert wait_until(lambda: agents()["home-1"]["idle"] >= 1, 30)
    row = agents()["home-1"]
    assert row["connected"] and row["group"] == "residential"
    assert row["address"].startswith("127.0.0.1:") and row["version"] == "fake-agent 1"
    assert row["connected_since"].endswith("Z")
    assert not agents()["home-2"]["connected"]
    assert via_socks(gw, "alice.residential", who.port)[1] == "127.0.0.2"
    r = ctl("agents")
    assert r.rc == 0 and "home-1" in r.out and "connected" in r.out, r

    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as m:
        text = m.read().decode()
    assert 'uringproxy_agents_connected{group="residential"} 1' in text, text
    assert 'uringproxy_agent_tunnels_total{agent="home-1"} 1' in text, text
    assert 'uringproxy_agent_idle_connections{agent="home-1"}' in text, text

    # kick: the link closes at once, the agent reconnects with backoff.
    assert ctl("agent", "kick", "home-1").rc == 0
    a1.wait_ready(2, timeout=30)

    # disable: the link closes within a second, and the agent stays out.
    assert ctl("agent", "disable", "home-1").rc == 0
    assert wait_until(lambda: not agents()["home-1"]["connected"], 10)
    assert wait_until(lambda: any("agent refused" in ln for ln in a1.lines), 30)
    code, peer = via_socks(gw, "alice.residential", who.port)
    assert (code, peer) == (0, "127.0.0.1")  # no member: group_fallback default -> direct
    assert ctl("agent", "enable", "home-1").rc == 0
    assert wait_until(lambda: agents()["home-1"]["connected"], 30)

    # add: a new agent with its secret on stdin; del closes it.
    r = ctl("agent", "add", "home-9", "--group", "residential", "--secret-stdin",
            input="home-nine-secret-Zz1\n")
    assert r.rc == 0, r
    assert "home-nine-secret" not in (gw.workdir / "agents.json").read_text()
    a9 = gateway.agent(gw, "home-9", secret="home-nine-secret-Zz1")
    a9.wait_ready()
    assert ctl("agent", "del", "home-9").rc == 0
    assert wait_until(lambda: "home-9" not in agents(), 10)
    assert wait_until(lambda: any("control link down" in ln for ln in a9.lines), 10)
    assert ctl("agent", "del", "nobody").rc == 1


def test_reload_with_a_new_secret_closes_the_link(gateway, who):
    """An agents file edited by hand (a new secret for home-1) and SIGHUP: the reload ends the
    link that authenticated with the old secret at once, as `agent del`/`disable` do, and the
    old secret is refused from then on."""
    gw = gateway()
    a1 = gateway.agent(gw, "home-1")
    a1.wait_ready()
    assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2")
    start = gw.mark()
    f = gw.workdir / "agents.json"
    doc = json.loads(f.read_text())
    for a in doc["agents"]:
        if a["id"] == "home-1":
            a["secret"] = sha512("a-new-secret-for-home-1-Yt6")
    f.write_text(json.dumps(doc))
    gw.signal(signal.SIGHUP)
    assert wait_until(lambda: "link closed (removed, disabled or changed)"
                      in gw.output_text(start), 10), gw.output_text(start)[-2000:]
    assert wait_until(lambda: any("control link down" in ln for ln in a1.lines), 10), a1.lines
    # The old secret no longer joins: the group has no member, group_fallback -> direct.
    assert wait_until(lambda: via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.1"),
                      30)
    assert gw.alive()
