"""Fixtures for the upstream-routing tests (loaded with `pytest_plugins = ["upstream_conftest"]`
from test_upstream_*.py): the peers (session-wide), the users and proxies files, a shared
uringproxy instance routing through all of them, and a factory for private instances."""
from __future__ import annotations

import types

import pytest

import harness
from harness import ProxyProcess, merge
from servers import closed_port
import upstreams as U

# ---------------------------------------------------------------------------------------------
# Users: each has its own plain password (never to appear in the proxy's output).
_USER_HASHES = {}
# A name only the recording upstream resolves (the test DNS answers NXDOMAIN for it).
ONLY_UPSTREAM = "only-upstream.invalid"


def pw(user: str) -> str:
    return f"{user}-pw-U7qe"


def user_secrets():
    return [pw(u) for u in _USER_HASHES]


def user(name, proxy_id=None, groups=None, **extra):
    if name not in _USER_HASHES:
        _USER_HASHES[name] = harness._crypt("sha512", pw(name))
    u = {"username": name, "password": _USER_HASHES[name], "external_proxy_id": proxy_id}
    if groups is not None:
        u["groups"] = groups
    u.update(extra)
    return u


def up_secrets():
    return U.upstream_secrets() + user_secrets()


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ustack(tmp_path_factory, servers):
    """Every peer, started once. Addresses: see upstreams.py."""
    miss = U.missing_tools()
    if miss:
        pytest.fail(f"missing tools for the upstream tests: {miss} "
                    "(apt-get install dante-server tinyproxy stunnel4 openssl curl)",
                    pytrace=False)
    U.ensure_system_user()
    base = tmp_path_factory.mktemp("upstreams")
    ns = types.SimpleNamespace(started=[], servers=[])

    def up(d):
        ns.started.append(d)  # before start: a failed start is still stopped at teardown
        return d.start()

    try:
        ns.pki = U.Pki(base / "pki")
        ns.dante_a = up(U.Dante(base / "dante-a", external=U.DANTE_A_EXIT, auth=True))
        ns.dante_b = up(U.Dante(base / "dante-b", external=U.DANTE_B_EXIT, auth=False))
        ns.tiny = up(U.Tinyproxy(base / "tinyproxy"))
        cert, key = ns.pki.server
        ns.st_dante = up(U.Stunnel(base / "st-dante", ns.dante_a.port, cert, key))
        ns.st_tiny = up(U.Stunnel(base / "st-tiny", ns.tiny.port, cert, key))
        ns.st_wrongca = up(U.Stunnel(base / "st-wrongca", ns.dante_a.port, *ns.pki.wrongca))
        ns.st_wrongname = up(U.Stunnel(base / "st-wrongname", ns.tiny.port, *ns.pki.wrongname))
        ns.target = U.AddrTarget("target")
        ns.health_target = U.AddrTarget("health-target")
        ns.garbage = U.GarbageServer()
        ns.silent = U.SilentServer()
        ns.stall_auth = U.StallSocks5("auth")
        ns.stall_connect = U.StallSocks5("connect")
        ns.http403 = U.FixedHttpProxy(403, "Forbidden")
        ns.http502 = U.FixedHttpProxy(502, "Bad Gateway")
        ns.recorder = U.RecordingSocks5(user="recuser", password=U.SOCKS_PASSWORD,
                                         aliases={ONLY_UPSTREAM: "127.0.0.1"})
        ns.st_silent = up(U.Stunnel(base / "st-silent", ns.silent.port, cert, key))
        # A SOCKS5 upstream that refuses every target with 0x05 and a clean close (dante
        # resets after its 0x05, and stunnel then drops the reply: see test_upstream_peers).
        ns.refuser = U.RecordingSocks5(reply=0x05)
        ns.servers.append(ns.refuser)
        ns.st_refuser = up(U.Stunnel(base / "st-refuser", ns.refuser.port, cert, key))
        ns.servers += [ns.stall_auth, ns.stall_connect]
        ns.servers += [ns.target, ns.health_target, ns.garbage, ns.silent, ns.http403,
                       ns.http502, ns.recorder]
        ns.closed = closed_port()
        ns.closed2 = closed_port()
        ns.echo = servers.echo
        ns.dns = servers.dns
    except BaseException:
        _teardown(ns)
        raise
    yield ns
    _teardown(ns)


def _teardown(ns):
    for d in reversed(ns.started):
        d.stop()
    for s in ns.servers:
        try:
            s.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
def socks(id_, port, creds=True, **kw):
    p = {"id": id_, "type": "socks5", "address": "127.0.0.1", "port": port, "enabled": True}
    if creds:
        p["username"], p["password"] = U.SOCKS_USER, U.SOCKS_PASSWORD
    p.update(kw)
    return p


def http(id_, port, creds=True, **kw):
    p = {"id": id_, "type": "http", "address": "127.0.0.1", "port": port, "enabled": True}
    if creds:
        p["username"], p["password"] = U.HTTP_USER, U.HTTP_PASSWORD
    p.update(kw)
    return p


def main_proxies(st):
    ca = str(st.pki.ca)
    tls = {"server_name": U.TLS_NAME, "verify": True, "ca_file": ca}
    return [
        # plain routes
        socks("proxy-socks", st.dante_a.port),
        socks("proxy-socks-open", st.dante_b.port, creds=False),
        dict(socks("proxy-us", st.st_dante.port), type="socks5s", tls=tls),
        # no server_name: defaults to the address, 127.0.0.1, which the cert has as an IP SAN
        dict(socks("proxy-us-ip", st.st_dante.port), type="socks5s",
             tls={"verify": True, "ca_file": ca}),
        http("proxy-http", st.tiny.port),
        dict(http("proxy-eu", st.st_tiny.port), type="https", tls=tls),
        dict(socks("proxy-rec", st.recorder.port), username="recuser"),
        # failures
        socks("dead", st.closed, on_failure="reject"),
        http("dead-http", st.closed2),
        socks("dead-direct", st.closed, on_failure="direct"),
        socks("dead-other", st.closed2, on_failure="proxy-http"),
        socks("disabled", st.dante_a.port, enabled=False),
        socks("garbage-socks", st.garbage.port),
        http("garbage-http", st.garbage.port),
        http("http-403", st.http403.port),
        http("http-502", st.http502.port),
        dict(http("http-badauth", st.tiny.port), password=U.WRONG_UPSTREAM_PASSWORD),
        dict(socks("socks-badauth", st.dante_a.port), password=U.WRONG_UPSTREAM_PASSWORD),
        dict(socks("tls-wrongca", st.st_wrongca.port), type="socks5s", tls=tls),
        dict(http("tls-wrongname", st.st_wrongname.port), type="https", tls=tls),
        dict(socks("tls-noverify", st.st_wrongca.port), type="socks5s",
             tls={"server_name": U.TLS_NAME, "verify": False}),
        dict(http("tls-noverify-https", st.st_wrongname.port), type="https",
             tls={"server_name": U.TLS_NAME, "verify": False}),
        dict(socks("tls-plain", st.dante_a.port), type="socks5s", tls=tls),
        # groups
        socks("refuser", st.refuser.port, creds=False),
        dict(socks("refuser-tls", st.st_refuser.port, creds=False), type="socks5s", tls=tls),
        socks("g-a", st.dante_a.port, group="us-east"),
        socks("g-b", st.dante_b.port, creds=False, group="us-east"),
        socks("s-a", st.dante_a.port, group="sticky"),
        socks("s-b", st.dante_b.port, creds=False, group="sticky"),
        socks("h-live", st.dante_a.port, group="half"),
        socks("h-dead", st.closed, group="half"),
        socks("d-only", st.closed2, group="dead"),
        socks("mix-socks", st.dante_a.port, group="mix"),
        http("mix-http", st.tiny.port, group="mix"),
        socks("lc-a", st.dante_a.port, group="lc"),
        socks("lc-b", st.dante_b.port, creds=False, group="lc"),
    ]


GROUPS_OF_ALICE = ["us-east", "sticky", "half", "dead", "mix", "lc"]


def main_users():
    return {"users": [
        user("alice", "proxy-us", GROUPS_OF_ALICE),
        user("bob", "proxy-eu", ["us-east"]),
        user("charlie", None),
        user("dan", "proxy-socks"),
        user("erin", "proxy-http"),
        user("frank", "proxy-socks-open"),
        user("ivan", "proxy-us-ip"),
        user("rec", "proxy-rec"),
        user("fdead", "dead"),
        user("fdeadhttp", "dead-http"),
        user("fdeaddirect", "dead-direct"),
        user("fdeadother", "dead-other"),
        user("fdisabled", "disabled"),
        user("fgarbage", "garbage-socks"),
        user("fgarbagehttp", "garbage-http"),
        user("f403", "http-403"),
        user("f502", "http-502"),
        user("fhttpbadauth", "http-badauth"),
        user("fsocksbadauth", "socks-badauth"),
        user("fwrongca", "tls-wrongca"),
        user("fwrongname", "tls-wrongname"),
        user("fnoverify", "tls-noverify"),
        user("fnoverifyhttps", "tls-noverify-https"),
        user("ftlsplain", "tls-plain"),
        user("frefuse", "refuser"),
        user("frefusetls", "refuser-tls"),
    ]}


def up_config(st, **over):
    cfg = {
        "proxies_file": "external_proxy.json",
        "health_check": {"interval_ms": 500, "timeout_ms": 1500,
                         "target": f"127.0.0.1:{st.health_target.port}"},
        "upstream": {"connect_timeout_ms": 2000, "attempts": 2, "backoff_ms": 200},
        "groups": {"us-east": {"policy": "round_robin"}, "sticky": {"policy": "hash_user"},
                   "half": {"policy": "round_robin"}, "dead": {"policy": "round_robin"},
                   "mix": {"policy": "round_robin"}, "lc": {"policy": "least_conn"}},
        "routing": {"on_failure": "reject", "group_fallback": "default"},
        "limits": {"handshake_timeout_ms": 10000, "idle_timeout_ms": 300000,
                   "auth_fail_block_after": 0},
    }
    return merge(cfg, over)


class UpInstances:
    def __init__(self, tmp_factory, st):
        self.tmp = tmp_factory
        self.st = st
        self.made = []

    def make(self, name, config, users, proxies, start=True):
        d = self.tmp.mktemp(name)
        p = ProxyProcess(d, self.st.dns.port, config, users, name=f"{name}@{d.name}")
        U.write_proxies_file(d, proxies)
        self.made.append(p)
        return p.start() if start else p

    def finish(self, procs):
        errors = []
        for p in procs:
            if p.proc is None:
                continue
            if not p.stopped_on_purpose:
                was_alive = p.alive()
                rc = stop_or_stacks(p)
                if was_alive and rc != 0:
                    errors.append(f"{p.name}: exit code {rc} after SIGTERM (want 0); stderr "
                                  "tail:\n" + "\n".join(p.stderr_lines()[-30:])
                                  + getattr(p, "hang_report", ""))
            errors += problems(p)
        return errors


def stop_or_stacks(p, timeout=harness.STOP_TIMEOUT):
    """SIGTERM and wait; a process still there after `timeout` gets its thread stacks taken
    with gdb (kept in <workdir>/hang-stacks.txt, head in p.hang_report) before SIGKILL."""
    import signal
    import subprocess
    p.stopped_on_purpose = True
    if not p.alive():
        return p.wait_exit(5)
    p.signal(signal.SIGTERM)
    rc = p.wait_exit(timeout)
    if rc is not None:
        return rc
    report = ""
    try:
        g = subprocess.run(["gdb", "-p", str(p.pid), "-batch", "-ex", "thread apply all bt"],
                           capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
        text = g.stdout.decode(errors="replace")
        (p.workdir / "hang-stacks.txt").write_text(text)
        frames = [ln for ln in text.splitlines() if ln.startswith(("#", "Thread"))]
        report = (f"\n--- still running {timeout:.0f} s after SIGTERM; thread stacks "
                  f"({p.workdir / 'hang-stacks.txt'}):\n" + "\n".join(frames[:80]))
    except (OSError, subprocess.SubprocessError) as e:
        report = f"\n--- still running {timeout:.0f} s after SIGTERM (no stacks: {e})"
    p.hang_report = report
    p.kill()
    return None


def problems(p, start=0):
    msgs = p.problems(start)
    text = p.output_text(start)
    leaked = [s for s in up_secrets() if s in text]
    if leaked:
        msgs.append(f"{p.name} logged upstream or user secrets: {leaked}")
    return msgs


@pytest.fixture(scope="session")
def up_instances(tmp_path_factory, ustack):
    inst = UpInstances(tmp_path_factory, ustack)
    yield inst
    errors = inst.finish(inst.made)
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def _main_up(up_instances, ustack):
    return up_instances.make("up-main", up_config(ustack), main_users(), main_proxies(ustack))


def watched(p):
    start = p.mark()
    yield p
    if not p.alive() and not p.stopped_on_purpose:
        p.stop()
        pytest.fail(f"{p.name} died during the test (rc={p.proc.returncode}); stderr tail:\n"
                    + "\n".join(p.stderr_lines()[-40:]), pytrace=False)
    msgs = problems(p, start)
    if msgs:
        pytest.fail("\n\n".join(msgs), pytrace=False)


@pytest.fixture
def uproxy(_main_up):
    """The shared instance: every user of main_users() routed through main_proxies()."""
    yield from watched(_main_up)


@pytest.fixture
def up_factory(up_instances):
    """Private instances (stopped at teardown; must exit 0 with clean output)."""
    made = []

    def factory(name, config, users, proxies, start=True):
        p = up_instances.make(name, config, users, proxies, start)
        made.append(p)
        return p

    yield factory
    errors = up_instances.finish(made)
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)
