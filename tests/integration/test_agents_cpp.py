"""Reverse agents (issue 12), agent side: the real `uringproxy agent` (C++) against a gateway,
each as its own process on loopback. The gateway fixtures and helpers are test_agents.py's
(which drives the Python fake_agent.py); here every agent is the binary itself, its egress
bound to its own source address (home-1 127.0.0.2, home-2 127.0.0.3) so the target, which
reports the peer address it saw, tells which agent carried a tunnel. Every wait is on an
event, with generous bounds (a busy 2-core machine)."""
import json
import os
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
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

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

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def cpp_agent(tmp_path_factory):
    made = []

    def make(gw, id_, **kw):
        a = CppAgent(gw, id_, tmp_path_factory.mktemp(f"agent-{id_}"), **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.kill()


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
