"""Fixtures: loopback servers (session-wide), shared proxy instances per config variant, and
per-test checks that the proxy is still alive and printed no sanitizer report or secret."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import servers as srv  # noqa: E402
from harness import PeerProxy, ProxyProcess, peer_mode  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "uringproxy_only: behaviour the reference peers lack")


def pytest_collection_modifyitems(config, items):
    if peer_mode():
        skip = pytest.mark.skip(reason="uringproxy-only behaviour (URINGPROXY_PEER set)")
        for it in items:
            if "uringproxy_only" in it.keywords:
                it.add_marker(skip)


def pytest_report_header(config):
    return [f"proxy under test: {'microsocks+tinyproxy (peer mode)' if peer_mode() else harness.proxy_binary()}"]


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def servers():
    ns = types.SimpleNamespace()
    ns.origin = srv.OriginServer("A")
    ns.origin2 = srv.OriginServer("B")
    ns.echo = srv.EchoServer()
    v6 = srv.ipv6_loopback_available()
    ns.echo6 = srv.EchoServer("::1") if v6 else None
    ns.origin6 = srv.OriginServer("A6", "::1") if v6 else None
    ns.drain = srv.DrainServer()
    ns.banner = srv.BannerServer()
    ns.reset = srv.ResetServer()
    ns.blackhole = srv.BlackHole()
    ns.dns = srv.DnsServer()
    ns.closed = srv.closed_port()
    yield ns
    for s in (ns.origin, ns.origin2, ns.origin6, ns.echo, ns.echo6, ns.drain, ns.banner, ns.reset,
              ns.blackhole, ns.dns):
        if s is not None:
            s.close()


VARIANTS = {
    "default": {},
    "strict": {"acl": {"deny_private": True}},
    "noauth": {"auth": "none"},
}


class Instances:
    def __init__(self, tmp_factory, dns_port):
        self.tmp = tmp_factory
        self.dns_port = dns_port
        self.live = {}
        self.shared = []

    def make(self, variant, overrides=None, users=None):
        cls = PeerProxy if peer_mode() else ProxyProcess
        d = self.tmp.mktemp(variant)
        p = cls(d, self.dns_port, overrides, users, name=f"{variant}@{d.name}")
        return p

    def get(self, variant):
        p = self.live.get(variant)
        if p is None or not p.alive():
            p = self.make(variant, VARIANTS[variant]).start()
            self.live[variant] = p
            self.shared.append(p)
        return p


@pytest.fixture(scope="session")
def instances(tmp_path_factory, servers):
    inst = Instances(tmp_path_factory, servers.dns.port)
    yield inst
    errors = []
    for p in inst.shared:
        if p.proc is None:
            continue
        was_alive = p.alive()
        rc = p.stop()
        if was_alive and rc != 0:
            errors.append(f"{p.name}: exit code {rc} after SIGTERM (want 0); stderr tail:\n"
                          + "\n".join(p.stderr_lines()[-30:]))
        errors += p.problems()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


def _watched(p):
    start = p.mark()
    yield p
    if not p.alive() and not p.stopped_on_purpose:
        p.stop()
        pytest.fail(f"{p.name} died during the test (rc={p.proc.returncode}); stderr tail:\n"
                    + "\n".join(p.stderr_lines()[-40:]), pytrace=False)
    msgs = p.problems(start)
    if msgs:
        pytest.fail("\n\n".join(msgs), pytrace=False)


@pytest.fixture
def proxy(instances):
    """auth required, deny_private false (loopback targets allowed), workers 2."""
    yield from _watched(instances.get("default"))


@pytest.fixture
def strict_proxy(instances):
    """As `proxy` but with acl.deny_private true (the default)."""
    yield from _watched(instances.get("strict"))


@pytest.fixture
def noauth_proxy(instances):
    yield from _watched(instances.get("noauth"))


@pytest.fixture
def fresh_proxy(instances):
    """Factory for a private instance (for tests that stop it or need other settings); each
    is stopped at teardown and must exit 0 with clean output."""
    made = []

    def factory(overrides=None, users=None, start=True):
        p = instances.make("fresh", overrides, users)
        made.append(p)
        return p.start() if start else p

    yield factory
    errors = []
    for p in made:
        if p.proc is None:
            continue
        if not p.stopped_on_purpose:
            rc = p.stop()
            if rc != 0:
                errors.append(f"{p.name}: exit code {rc} after SIGTERM (want 0)")
        errors += p.problems()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)
