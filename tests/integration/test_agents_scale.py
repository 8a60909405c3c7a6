"""Reverse agents (issue 12) at scale: a gateway killed and restarted with 200 real `uringproxy
agent` processes connected. The gateway fixtures and helpers are test_agents.py's. Every agent
has its own egress address (127.1.X.Y), so the target, which reports the peer address it saw,
shows that a user was carried by an agent and not sent direct by group_fallback. Every wait is
on an event, with generous bounds (a busy 2-core machine, sanitizer builds)."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from ctl_helpers import run_ctl
from harness import proxy_binary
from servers import free_port, wait_until
from test_agents import gateway, sha512, via_socks, who  # noqa: F401 (fixtures)

pytestmark = pytest.mark.uringproxy_only

SECRET = "scale-agent-secret-Hv7"  # one secret for every agent (the ids differ)


def sanitizer():
    """"asan", "tsan" or None: which runtime the binary under test links (a gcc sanitizer
    build links libasan / libtsan dynamically)."""
    r = subprocess.run(["readelf", "-d", proxy_binary()], capture_output=True, text=True)
    for name in ("asan", "tsan"):
        if f"lib{name}.so" in r.stdout:
            return name
    return None


# 200 as the issue asks. A sanitizer build's agent costs far more: under ASan about 130 MB of RSS
# (15 MB in release) and 1-2 CPU-seconds to start, measured here; 60 of them took 47 s to come
# up on a loaded 2-core machine, and scripts/test runs two test files at once. So 40 under ASan
# and 20 under TSan (slower still): what is under test (every agent back, backoff bounding the
# attempts) does not depend on the count.
AGENTS = {None: 200, "asan": 40, "tsan": 20}


def agent_source(i):
    return f"127.1.{i // 200}.{i % 200 + 1}"


class AgentFleet:
    """N `uringproxy agent` processes (workers 1, idle_connections 2), ids scale-000..., each
    logging to its own file (200 reader threads would be a load of their own)."""

    def __init__(self, gw, n, workdir):
        self.dir = workdir
        secret = workdir / "agent.secret"
        secret.write_text(SECRET + "\n")
        secret.chmod(0o600)
        self.ids = [f"scale-{i:03d}" for i in range(n)]
        self.sources = {agent_source(i) for i in range(n)}
        self.procs = []
        self.logs = []
        for i, id_ in enumerate(self.ids):
            cfg = {"gateway": f"127.0.0.1:{gw.agent_port}", "id": id_,
                   "secret_file": "agent.secret",
                   "tls": {"ca_file": str(gw.cert), "server_name": "gw.test"},
                   "idle_connections": 2, "workers": 1, "source_address": agent_source(i),
                   "acl": {"allow": ["127.0.0.0/8"]}}
            path = workdir / f"{id_}.json"
            path.write_text(json.dumps(cfg))
            log = workdir / f"{id_}.log"
            with open(log, "wb") as out:
                self.procs.append(subprocess.Popen(
                    [proxy_binary(), "agent", "--config", str(path)], stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            self.logs.append(log)

    def text(self, i):
        try:
            return self.logs[i].read_text(errors="replace")
        except OSError:
            return ""

    def up_counts(self):
        return [self.text(i).count("control link up") for i in range(len(self.ids))]

    def running(self):
        return sum(1 for p in self.procs if p.poll() is None)

    def stop(self):
        """SIGTERM to every agent (a sanitizer build reports leaks at exit), then wait for all,
        bounded; SIGKILL for any left. Returns the exit codes."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        return [p.returncode for p in self.procs]

    def problems(self):
        out = []
        for i in range(len(self.ids)):
            t = self.text(i)
            if "Sanitizer" in t or "runtime error:" in t:
                out.append(f"{self.ids[i]}:\n{t[-4000:]}")
        return out


@pytest.fixture
def fleet(tmp_path_factory):
    made = []

    def make(gw, n):
        f = AgentFleet(gw, n, tmp_path_factory.mktemp("fleet"))
        made.append(f)
        return f

    yield make
    for f in made:
        codes = f.stop()
        bad = f.problems()
        assert not bad, "\n\n".join(bad[:3])
        # SIGTERM is a clean stop: 0 (a TSan race would make it 66).
        assert all(c == 0 for c in codes), [(f.ids[i], c) for i, c in enumerate(codes) if c]


class CountingListener:
    """Holds the gateway's agent port while the gateway is away: accepts every connection and
    closes it at once (the agent's TLS handshake fails, as against a dead gateway), counting
    those accepted before `deadline` (monotonic): the agents' reconnect attempts. A connection
    accepted by then arrived by then, so a slow accept loop can only count fewer."""

    def __init__(self, port, deadline):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # The port is below the ephemeral range (free_port), so no connect() can hold it; the
        # dead gateway's closing sockets carry SO_REUSEADDR like its listener. Retry briefly anyway:
        # a failed bind here would say nothing about reconnect storms.
        end = time.monotonic() + 10
        while True:
            try:
                self.sock.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        self.sock.listen(4096)
        self.sock.settimeout(0.1)
        self.deadline = deadline
        self.count = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if time.monotonic() <= self.deadline:
                self.count += 1
            c.close()

    def close(self):
        self.done.set()
        self.thread.join(10)
        self.sock.close()
        return self.count


def metric(port, text):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as m:
        body = m.read().decode()
    for ln in body.splitlines():
        if ln.startswith(text + " "):
            return float(ln.split()[-1])
    return None


def test_gateway_restart_with_200_agents(gateway, fleet, who):  # noqa: F811
    n = AGENTS[sanitizer()]
    t_test = time.monotonic()
    mport = free_port()
    gw = gateway(start=False, extra={
        "control": {"socket": "run/control.sock"},
        "metrics": {"listen": f"127.0.0.1:{mport}"},
        # 200 agents dial in at once, each with a sha512-crypt secret to check on a busy
        # machine: the handshake bound is the default one, not the suite's 2 s.
        "limits": {"handshake_timeout_ms": 10000}})
    hashed = sha512(SECRET)
    agents_file = gw.workdir / "agents.json"
    agents_file.write_text(json.dumps({"agents": [
        {"id": f"scale-{i:03d}", "secret": hashed, "group": "residential"} for i in range(n)]}))
    agents_file.chmod(0o600)
    gw.start()
    sock = str(gw.workdir / "run" / "control.sock")

    def connected():
        r = run_ctl(["--socket", sock, "--json", "agents"])
        assert r.rc == 0, r
        return sum(1 for a in r.json()["agents"] if a["connected"])

    group_metric = 'uringproxy_agents_connected{group="residential"}'
    f = fleet(gw, n)
    assert wait_until(lambda: connected() == n, 90, interval=0.5), \
        (connected(), f.running(), f.text(0)[-2000:])
    assert metric(mport, group_metric) == n
    took_up = time.monotonic() - t_test
    assert via_socks(gw, "alice.residential", who.port)[1] in f.sources

    # Kill the gateway (-9: no goodbye to any agent). While it is away a listener holds its port
    # and counts the agents' attempts for `window` seconds from the kill. An agent waits
    # 0.25-0.5 s, then 0.5-1 s, then 1-2 s before its control link's attempts
    # (src/agent/agent_main.cpp), so within 1.5 s of noticing the kill it tries at most twice;
    # and it may have started replacing its idle_connections (2) reverse links in the moment
    # before it noticed its control link was gone. More than (2 + 2) * n attempts is a
    # reconnect storm (an agent retrying every 200 ms would make 7 each). A slow machine can
    # only make fewer attempts, never more: the bound holds however busy the machine is.
    window = 1.5
    t_kill = time.monotonic()
    gw.proc.kill()
    gw.kill()  # reaps it: the port is free
    listener = CountingListener(gw.agent_port, t_kill + window)
    time.sleep(max(0.0, t_kill + window - time.monotonic()))
    attempts = listener.close()
    mark_restart = time.monotonic()
    gw.stopped_on_purpose = False
    gw.start()
    t_ready = time.monotonic()
    # Every agent back. Its next attempts come 1-2 s, 2-4 s, 4-8 s ... apart: one that just
    # missed a gateway taking several seconds to start (a sanitizer build, a loaded machine)
    # is back within about twice that; 60 s leaves room for both.
    assert wait_until(lambda: connected() == n, 60, interval=0.5), \
        (connected(), sorted(set(f.up_counts())))
    back = time.monotonic() - t_ready
    assert metric(mport, group_metric) == n
    assert wait_until(lambda: min(f.up_counts()) >= 2, 20), sorted(set(f.up_counts()))
    # Each agent's control link came up once on the new gateway: no agent kept reconnecting.
    controls = sum("connected from" in ln for ln in gw.stderr_lines())
    print(f"\n{n} agents: up in {took_up:.1f} s; {attempts} attempts in the {window} s the "
          f"gateway was away; back {back:.1f} s after it was ready "
          f"(killed {mark_restart - t_kill:.1f} s); {controls} control links on the new gateway")
    assert attempts <= 4 * n, attempts
    assert n <= controls <= 2 * n, controls
    # A user routed to the group gets through one of the agents.
    for _ in range(4):
        code, peer = via_socks(gw, "alice.residential", who.port)
        assert code == 0 and peer in f.sources, (code, peer)
    assert gw.wait_access_log(lambda r: r.get("user") == "alice"
                              and r.get("route", "").startswith("agent:scale-"), timeout=20)
    assert f.running() == n
