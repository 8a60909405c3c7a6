"""Reverse agents (issue 12), agent side: the real `uringproxy agent` (C++) against a gateway,
each as its own process on loopback. The gateway fixtures and helpers are test_agents.py's
(which drives the Python fake_agent.py); here every agent is the binary itself, its egress
bound to its own source address (home-1 127.0.0.2, home-2 127.0.0.3) so the target, which
reports the peer address it saw, tells which agent carried a tunnel. Every wait is on an
event, with generous bounds (a busy 2-core machine)."""
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from clients import recv_exact, socks5_open
from harness import PASSWORDS, proxy_binary
from servers import wait_until
from test_agents import (SECRETS, SOURCES, gateway, read_peer, via_http,  # noqa: F401 (fixtures)
                         via_socks, who)

pytestmark = pytest.mark.uringproxy_only


class CppAgent:
    """`uringproxy agent --config agent.json` for one agent id of the gateway fixture."""

    def __init__(self, gw, id_, workdir, idle=4, acl=None, secret=None, workers=1):
        self.dir = workdir
        secret_file = workdir / "agent.secret"
        secret_file.write_text((secret if secret is not None else SECRETS[id_]) + "\n")
        secret_file.chmod(0o600)
        cfg = {"gateway": f"127.0.0.1:{gw.agent_port}", "id": id_,
               "secret_file": "agent.secret",
               "tls": {"ca_file": str(gw.cert), "server_name": "gw.test"},
               "idle_connections": idle, "workers": workers,
               "source_address": SOURCES[id_],
               # The targets here live on loopback: allowed explicitly, as an operator would.
               "acl": acl if acl is not None else {"allow": ["127.0.0.0/8"]}}
        self.config = workdir / "agent.json"
        self.config.write_text(json.dumps(cfg))
        self.lines = []
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([proxy_binary(), "agent", "--config", str(self.config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self.reader.start()

    def _read(self, proc):
        for ln in proc.stdout:
            self.lines.append(ln.decode(errors="replace").rstrip())

    def ready_count(self):
        return sum(1 for ln in list(self.lines) if "control link up" in ln)

    def wait_ready(self, n=1, timeout=30):
        assert wait_until(lambda: self.ready_count() >= n, timeout), \
            f"agent not ready ({n}): {self.lines[-15:]}"

    def has(self, text):
        return any(text in ln for ln in list(self.lines))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.reader.join(10)  # its last lines are read before anyone looks at them

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self.reader.join(10)  # its last lines ("stopped") are read before anyone looks
        return rc


@pytest.fixture
def cpp_agent(tmp_path_factory):
    made = []

    def make(gw, id_, **kw):
        a = CppAgent(gw, id_, tmp_path_factory.mktemp(f"agent-{id_}"), **kw)
        made.append(a)
        return a

    yield make
    # A graceful stop, so a sanitizer build reports leaks at exit; then no sanitizer report
    # may be in any agent's output (killed ones included, up to their death).
    for a in made:
        if a.proc.poll() is None:
            try:
                a.stop()
            except subprocess.TimeoutExpired:
                a.kill()
    time.sleep(0.2)  # the reader threads take the last lines
    for a in made:
        bad = [ln for ln in a.lines if "Sanitizer" in ln or "runtime error:" in ln]
        assert not bad, "\n".join(a.lines[-60:])


def two_agents(gateway, cpp_agent, **kw):  # noqa: F811 (the fixture, passed on)
    gw = gateway(**kw)
    a1, a2 = cpp_agent(gw, "home-1"), cpp_agent(gw, "home-2")
    a1.wait_ready()
    a2.wait_ready()
    return gw, a1, a2


def test_round_robin_across_two_cpp_agents_socks_and_http(gateway, cpp_agent, who):  # noqa: F811
    gw, a1, a2 = two_agents(gateway, cpp_agent)
    seen = []
    for i in range(8):
        code, peer = (via_socks if i % 2 == 0 else via_http)(gw, "alice.residential", who.port)
        assert code in (0, 200), (i, code, a1.lines[-5:], a2.lines[-5:])
        seen.append(peer)
    assert set(seen) == {"127.0.0.2", "127.0.0.3"}, seen
    assert gw.wait_access_log(lambda r: r.get("route") == "agent:home-2", timeout=20)
    # The agent logs each tunnel with the gateway's tunnel id.
    assert wait_until(lambda: a1.has("tunnel ") and a1.has("bytes up"), 20), a1.lines[-5:]
    tunnel_lines = [ln for ln in a1.lines + a2.lines if "tunnel " in ln and ": to 127.0.0.1:" in ln]
    assert tunnel_lines, (a1.lines[-5:], a2.lines[-5:])


def test_hash_user_is_sticky_across_cpp_agents(gateway, cpp_agent, who):  # noqa: F811
    gw, _, _ = two_agents(gateway, cpp_agent, policy="hash_user")
    for user in ("alice", "bob", "carol"):
        seen = {via_socks(gw, f"{user}.residential", who.port)[1] for _ in range(4)}
        assert len(seen) == 1 and seen <= {"127.0.0.2", "127.0.0.3"}, (user, seen)


def test_agent_acl_denies_loopback_unless_allowed(gateway, cpp_agent, who):  # noqa: F811
    gw = gateway()
    # No "acl": deny_private is on by default, and loopback is private.
    a = cpp_agent(gw, "home-1", acl={})
    a.wait_ready()
    assert via_socks(gw, "alice.residential", who.port)[0] == 0x02
    assert via_http(gw, "alice.residential", who.port)[0] == 403
    # By name too: "localhost" resolves to loopback, refused after resolution.
    r = socks5_open(gw.socks_port, "localhost", who.port, user="alice.residential",
                    pw=PASSWORDS["alice"])
    assert r.rep == 0x02, r
    r.sock.close()
    assert gw.wait_access_log(lambda r: r.get("route") == "agent:home-1"
                              and r.get("result") == "denied", timeout=20)
    assert wait_until(lambda: a.has("denied"), 20), a.lines[-5:]
    a.kill()
    # The operator allows loopback: the same target is reached.
    b = cpp_agent(gw, "home-1", acl={"allow": ["127.0.0.0/8"]})
    b.wait_ready()
    assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2")


def test_sighup_reloads_the_agent(gateway, cpp_agent, who):  # noqa: F811
    """SIGHUP re-reads agent.json and the secret file: a new ACL serves new tunnels with the
    links as they are; a file that does not load changes nothing; a new secret reconnects
    everything under it (here refused by the gateway, so the group loses the agent)."""
    gw = gateway()
    a = cpp_agent(gw, "home-1", acl={})  # deny_private: loopback targets refused
    a.wait_ready()
    assert via_socks(gw, "alice.residential", who.port)[0] == 0x02

    def reload(marker, n):
        a.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: sum(marker in ln for ln in list(a.lines)) >= n, 20), \
            a.lines[-10:]

    cfg = json.loads(a.config.read_text())
    cfg["acl"] = {"allow": ["127.0.0.0/8"]}
    a.config.write_text(json.dumps(cfg))
    reload("agent.json reloaded", 1)
    assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2")
    assert a.ready_count() == 1  # the control link stayed up
    assert not a.has("reconnecting")

    a.config.write_text("{not json")
    reload("not reloaded; the agent goes on as it was", 1)
    assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2")

    a.config.write_text(json.dumps(cfg))
    (a.dir / "agent.secret").write_text("a-secret-the-gateway-never-saw\n")
    reload("reconnecting to the gateway", 1)
    assert wait_until(lambda: a.has("refused by the gateway: denied"), 30), a.lines[-10:]
    assert "a-secret-the-gateway-never-saw" not in "\n".join(a.lines)
    # No member left: group_fallback default -> direct.
    assert wait_until(lambda: via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.1"),
                      30)
    assert a.proc.poll() is None


def test_reverse_links_resume_across_a_new_identity(gateway, cpp_agent, who):  # noqa: F811
    """Reverse links resume one TLS session. A reload to a new identity (here a wrong secret,
    then the right one again) starts a new session, kept in the same slot as the old one, and
    the links that follow resume it."""
    gw = gateway()
    a = cpp_agent(gw, "home-1")
    a.wait_ready()
    secret = a.dir / "agent.secret"
    right = secret.read_text()
    secret.write_text("a-secret-the-gateway-never-saw\n")
    a.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: a.has("refused by the gateway: denied"), 30), a.lines[-10:]
    secret.write_text(right)
    a.proc.send_signal(signal.SIGHUP)
    a.wait_ready(2)
    # Each tunnel takes an idle reverse link; its replacement resumes the current session.
    for i in range(6):
        assert wait_until(lambda: via_socks(gw, "alice.residential", who.port)
                          == (0, "127.0.0.2"), 20), (i, a.lines[-10:])
    assert a.stop() == 0
    line = next((ln for ln in a.lines if "reverse link(s) authenticated" in ln), None)
    assert line is not None, a.lines[-10:]
    m = re.search(r"(\d+) reverse link\(s\) authenticated, (\d+) of them resumed", line)
    assert m and int(m.group(2)) >= 1, line


def test_refused_target_through_cpp_agent(gateway, cpp_agent, who):  # noqa: F811
    from servers import closed_port
    gw = gateway()
    cpp_agent(gw, "home-1").wait_ready()
    assert via_socks(gw, "alice.residential", closed_port())[0] == 0x05
    assert via_http(gw, "alice.residential", closed_port())[0] == 502
    # The link that carried the failed tunnel was replaced: the agent keeps serving.
    assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2")


def test_wrong_secret_never_joins_and_backs_off(gateway, cpp_agent, who):  # noqa: F811
    gw = gateway()
    a = cpp_agent(gw, "home-1", secret="not-the-secret")
    assert wait_until(lambda: sum("refused by the gateway: denied" in ln
                                  for ln in list(a.lines)) >= 2, 30), a.lines[-10:]
    assert a.ready_count() == 0
    # Backoff: a few attempts in 3 s, not a storm.
    n0 = sum("refused by the gateway" in ln for ln in list(a.lines))
    time.sleep(3)
    n1 = sum("refused by the gateway" in ln for ln in list(a.lines))
    assert n1 - n0 <= 4, (n0, n1)
    assert "not-the-secret" not in "\n".join(a.lines)
    assert "not-the-secret" not in gw.output_text()
    # No member: group_fallback default -> direct.
    assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.1")


def test_kill_cpp_agent_mid_transfer(gateway, cpp_agent, who):  # noqa: F811
    gw, a1, a2 = two_agents(gateway, cpp_agent)
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
    victim.sendall(b"x" * 100000)
    assert recv_exact(victim, 100000) == b"x" * 100000
    a1.kill()  # SIGKILL, mid-tunnel
    victim.settimeout(30)
    try:
        while victim.recv(65536):
            pass
    except OSError:
        pass
    victim.close()
    survivor.sendall(b"still here")
    assert recv_exact(survivor, 10) == b"still here"
    survivor.close()
    # New tunnels all go through home-2 (the gateway may first try a dead idle link of
    # home-1's and then another member: the user never sees it).
    for _ in range(6):
        assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.3")
    assert gw.alive()


def test_gateway_restart_cpp_agents_come_back(gateway, cpp_agent, who):  # noqa: F811
    gw, a1, a2 = two_agents(gateway, cpp_agent)
    assert via_socks(gw, "alice.residential", who.port)[0] == 0
    assert gw.stop() == 0
    gw.stopped_on_purpose = False
    gw.start()
    t0 = time.monotonic()
    a1.wait_ready(2, timeout=30)
    a2.wait_ready(2, timeout=30)
    back = time.monotonic() - t0
    assert back < 30, back
    assert a1.has("reconnecting everything")
    # Both serve again (their idle links are replenished after the new control link).
    assert wait_until(lambda: {via_socks(gw, "alice.residential", who.port)[1]
                               for _ in range(6)} == {"127.0.0.2", "127.0.0.3"}, 30)


def test_thousand_concurrent_tunnels_through_two_cpp_agents(gateway, cpp_agent, who):  # noqa: F811
    # 1,000 Python threads on a busy 2-core machine (an ASan run) may take seconds between a
    # connect and their greeting: the suite's 2 s handshake timeout would cut them (a reset).
    gw = gateway(extra={"upstream": {"connect_timeout_ms": 20000, "attempts": 2},
                        "limits": {"max_connections_per_user": 0,
                                   "handshake_timeout_ms": 120000}})
    a1 = cpp_agent(gw, "home-1", idle=32)
    a2 = cpp_agent(gw, "home-2", idle=32)
    a1.wait_ready()
    a2.wait_ready()
    n = 1000
    results = [None] * n
    opened = threading.Barrier(n + 1, timeout=300)

    def one(i):
        s = None
        try:
            r = socks5_open(gw.socks_port, "127.0.0.1", who.port, user="alice.residential",
                            pw=PASSWORDS["alice"], timeout=120)
            if r.rep != 0:
                results[i] = f"rep {r.rep}"
                r.sock.close()
                return
            s = r.sock
            s.settimeout(120)
            peer = read_peer(s)
            msg = f"tunnel {i} ".encode() * 10
            s.sendall(msg)
            assert recv_exact(s, len(msg)) == msg
            results[i] = peer
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = repr(e)
        finally:
            try:
                opened.wait()  # all 1,000 open at once before any closes
            except threading.BrokenBarrierError:
                pass
            if s is not None:
                s.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    try:
        opened.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(300)
    took = time.monotonic() - t0
    bad = [r for r in results if r not in ("127.0.0.2", "127.0.0.3")]
    assert not bad, (len(bad), bad[:5])
    assert {"127.0.0.2", "127.0.0.3"} <= set(results)
    assert took < 300, took
    assert gw.alive() and a1.proc.poll() is None and a2.proc.poll() is None


def test_agent_check(tmp_path):
    d = tmp_path
    (d / "agent.secret").write_text("s\n")
    (d / "agent.secret").chmod(0o644)
    (d / "agent.json").write_text(json.dumps({"gateway": "127.0.0.1:1", "id": "home-1",
                                              "secret_file": "agent.secret", "idle": 3}))
    r = subprocess.run([proxy_binary(), "agent", "--check", "--config", str(d / "agent.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "agent.json: idle: unknown field" in r.stderr or "idle" in r.stderr, r.stderr
    assert "chmod 600" not in r.stderr  # the JSON errors stop before the secret is read
    (d / "agent.json").write_text(json.dumps({"gateway": "127.0.0.1:1", "id": "home-1",
                                              "secret_file": "agent.secret"}))
    r = subprocess.run([proxy_binary(), "agent", "--check", "--config", str(d / "agent.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "mode 0644" in r.stderr and "chmod 600" in r.stderr, r.stderr
    (d / "agent.secret").chmod(0o600)
    r = subprocess.run([proxy_binary(), "agent", "--check", "--config", str(d / "agent.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout, r


def test_sigterm_stops_the_agent_and_it_leaves_the_group(gateway, cpp_agent, who):  # noqa: F811
    gw = gateway()
    a = cpp_agent(gw, "home-1")
    a.wait_ready()
    assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2")
    t0 = time.monotonic()
    assert a.stop() == 0, a.lines[-10:]
    assert time.monotonic() - t0 < 20
    assert a.has("stopped")
    # Its control link is gone: the group has no member, group_fallback default -> direct.
    assert wait_until(lambda: via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.1"), 30)


def test_kick_and_disable_reach_the_cpp_agent(gateway, cpp_agent, who):  # noqa: F811
    from ctl_helpers import run_ctl
    gw = gateway(extra={"control": {"socket": "run/control.sock"}})
    sock = str(gw.workdir / "run" / "control.sock")

    def ctl(*args):
        return run_ctl(["--socket", sock] + list(args))

    def agents():
        r = ctl("--json", "agents")
        assert r.rc == 0, r
        return {a["id"]: a for a in r.json()["agents"]}

    a = cpp_agent(gw, "home-1")
    a.wait_ready()
    assert wait_until(lambda: agents()["home-1"]["idle"] >= 4, 30), agents()["home-1"]
    row = agents()["home-1"]
    assert row["version"].startswith("uringproxy "), row
    # kick: the gateway closes the link; the agent reconnects with backoff.
    assert ctl("agent", "kick", "home-1").rc == 0
    a.wait_ready(2, timeout=30)
    assert via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2")
    # disable: refused until enabled again.
    assert ctl("agent", "disable", "home-1").rc == 0
    assert wait_until(lambda: a.has("refused by the gateway: denied"), 30), a.lines[-10:]
    assert ctl("agent", "enable", "home-1").rc == 0
    a.wait_ready(3, timeout=60)
    assert wait_until(lambda: via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2"), 30)


def test_silent_gateway_is_noticed_by_heartbeat(gateway, cpp_agent, who, monkeypatch):  # noqa: F811
    monkeypatch.setenv("URINGPROXY_AGENT_HEARTBEAT_MS", "1000")
    gw = gateway()
    a = cpp_agent(gw, "home-1")
    a.wait_ready()
    assert wait_until(lambda: a.has("heartbeat 1000 ms"), 10), a.lines[-5:]
    gw.proc.send_signal(signal.SIGSTOP)  # alive but silent: no PING, no FIN
    try:
        assert wait_until(lambda: a.has("nothing from the gateway"), 30), a.lines[-10:]
        assert wait_until(lambda: a.has("reconnecting everything"), 10), a.lines[-10:]
    finally:
        gw.proc.send_signal(signal.SIGCONT)
    a.wait_ready(2, timeout=60)
    assert wait_until(lambda: via_socks(gw, "alice.residential", who.port) == (0, "127.0.0.2"), 30)
