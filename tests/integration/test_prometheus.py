"""docs/wire.md#observability with a real Prometheus: the daemon serves /metrics and /healthz on metrics.listen;
the text parses as the Prometheus text format and holds every metric name of docs/wire.md#observability; a
real Prometheus server (Debian's `prometheus` package) scrapes it every second and its query API
returns alice's per-user byte counter; every query of config/grafana-dashboard.json runs on it
without an error."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from clients import echo_roundtrip, socks5_open
from harness import PASSWORDS, REPO, WRONG_PASSWORD
from servers import free_port

pytestmark = pytest.mark.uringproxy_only

PROMETHEUS_WAIT = 60.0  # bound for Prometheus to start, scrape and answer with the sample

# docs/wire.md#observability, in order; the histogram's samples carry the _bucket/_sum/_count suffixes.
DOCUMENTED_METRICS = {
    "uringproxy_connections_total": "counter",
    "uringproxy_connections_active": "gauge",
    "uringproxy_bytes_total": "counter",
    "uringproxy_user_bytes_total": "counter",
    "uringproxy_auth_failures_total": "counter",
    "uringproxy_route_total": "counter",
    "uringproxy_upstream_up": "gauge",
    "uringproxy_connect_duration_seconds": "histogram",
    "uringproxy_config_generation": "gauge",
}

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE_RE = re.compile(rf"^({_NAME})(\{{(?:{_LABEL}(?:,{_LABEL})*,?)?\}})? (\S+)( -?\d+)?$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def prometheus_binary():
    for cand in (shutil.which("prometheus"), "/usr/bin/prometheus"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8", "replace")


def parse_exposition(text):
    """Parses the Prometheus text format strictly. Returns (types, samples) where samples is a
    list of (name, {labels}, value); raises AssertionError naming the first bad line."""
    types, samples = {}, []
    assert text.endswith("\n"), "exposition does not end with a newline"
    for n, ln in enumerate(text.split("\n")[:-1], 1):
        if ln.startswith("#"):
            parts = ln.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                assert re.fullmatch(_NAME, parts[2]), f"line {n}: bad name in {ln!r}"
                if parts[1] == "TYPE":
                    assert len(parts) == 4 and parts[3] in (
                        "counter", "gauge", "histogram", "summary", "untyped"), \
                        f"line {n}: bad TYPE line {ln!r}"
                    assert parts[2] not in types, f"line {n}: second TYPE for {parts[2]}"
                    types[parts[2]] = parts[3]
            continue
        assert ln.strip(), f"line {n}: empty line inside the exposition"
        m = SAMPLE_RE.match(ln)
        assert m, f"line {n}: not `name{{labels}} value`: {ln!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        try:
            v = float(value)
        except ValueError:
            raise AssertionError(f"line {n}: value {value!r} is not a number: {ln!r}")
        samples.append((name, dict(LABEL_RE.findall(labels)), v))
    return types, samples


def family(name, types):
    """The metric family a sample name belongs to (histogram suffixes stripped)."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return name


class Prometheus:
    """A real Prometheus server in a temp dir, scraping one target every second."""

    def __init__(self, binary, workdir: Path, target_port: int):
        self.workdir = workdir
        self.port = free_port()
        self.target = f"127.0.0.1:{target_port}"
        cfg = workdir / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: uringproxy\n    scrape_interval: 1s\n"
            f"    static_configs:\n      - targets: ['{self.target}']\n")
        self.log_path = workdir / "prometheus.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def query(self, expr):
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422 carry a JSON error body
            return json.loads(e.read() or b"{}")

    def wait_ready(self, deadline):
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if http_get(f"{self.url}/-/ready", timeout=2)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def stop(self):
        """SIGTERM to our own Prometheus (by PID), SIGKILL if it does not go in 20 s."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def microsocks_upstream():
    """A microsocks on a free loopback port (no auth), or None when it is not installed."""
    if not shutil.which("microsocks"):
        return None, None
    port = free_port()
    p = subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    p.wait(5)
    return None, None


@pytest.fixture
def metered_proxy(fresh_proxy, tmp_path):
    """A private instance with /metrics on a free loopback port and one upstream (microsocks if
    installed, else a closed port) so that uringproxy_upstream_up has a series."""
    ms, ms_port = microsocks_upstream()
    up_port = ms_port if ms_port else free_port()
    mport = free_port()
    p = fresh_proxy({"metrics": {"listen": f"127.0.0.1:{mport}"},
                     "proxies_file": "external_proxy.json",
                     "health_check": {"interval_ms": 1000, "timeout_ms": 1000}}, start=False)
    p.workdir.mkdir(parents=True, exist_ok=True)
    pf = p.workdir / "external_proxy.json"
    pf.write_text(json.dumps({"proxies": [
        {"id": "ms", "name": "microsocks", "type": "socks5", "address": "127.0.0.1",
         "port": up_port, "enabled": True}]}))
    os.chmod(pf, 0o600)
    try:
        p.start()
        p.metrics_port = mport
        p.upstream_live = ms is not None
        yield p
    finally:
        if ms is not None:
            ms.terminate()
            ms.wait(10)


def drive_traffic(p, servers, n=5, size=65536):
    """n SOCKS5 tunnels as alice with a `size`-byte echo each, then one failed login."""
    for i in range(n):
        r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
        assert (r.auth_status, r.rep) == (0, 0), r
        echo_roundtrip(r.sock, os.urandom(size))
        r.sock.close()
    r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, pw=WRONG_PASSWORD)
    assert r.auth_status == 0x01, r
    r.sock.close()
    return n * size


def test_metrics_text_and_healthz(metered_proxy, servers):
    p = metered_proxy
    sent = drive_traffic(p, servers)
    status, ctype, body = http_get(f"http://127.0.0.1:{p.metrics_port}/healthz")
    assert status == 200, (status, body)
    status, ctype, text = http_get(f"http://127.0.0.1:{p.metrics_port}/metrics")
    assert status == 200
    assert ctype.startswith("text/plain"), f"/metrics Content-Type {ctype!r}"
    types, samples = parse_exposition(text)
    names = {family(n, types) for n, _, _ in samples}
    for name, kind in DOCUMENTED_METRICS.items():
        assert types.get(name) == kind, f"{name}: TYPE {types.get(name)!r}, want {kind}"
        assert name in names, f"{name}: no sample in /metrics"
    for n, _, _ in samples:  # every sample belongs to a declared family
        assert family(n, types) in types, f"sample {n} has no # TYPE line"

    def value(name, **labels):
        vals = [v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items())]
        return sum(vals) if vals else None

    assert value("uringproxy_user_bytes_total", user="alice", direction="down") >= sent
    assert value("uringproxy_user_bytes_total", user="alice", direction="up") >= sent
    assert value("uringproxy_bytes_total", direction="down") >= sent
    assert value("uringproxy_connections_total", listener="socks") >= 6
    assert value("uringproxy_auth_failures_total") >= 1
    assert value("uringproxy_route_total", route="direct") >= 5
    assert value("uringproxy_upstream_up", proxy="ms") in (0.0, 1.0)
    assert value("uringproxy_config_generation") >= 1
    # histogram: cumulative buckets ending in +Inf == _count
    buckets = [(ls["le"], v) for n, ls, v in samples if n == "uringproxy_connect_duration_seconds_bucket"]
    assert buckets and buckets[-1][0] == "+Inf", buckets
    les = [math.inf if le == "+Inf" else float(le) for le, _ in buckets]
    assert les == sorted(les), f"bucket bounds out of order: {les}"
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"buckets not cumulative: {buckets}"
    assert counts[-1] == value("uringproxy_connect_duration_seconds_count"), buckets
    assert counts[-1] >= 5


def test_real_prometheus_scrapes_user_bytes(metered_proxy, servers, tmp_path):
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("the prometheus binary is not installed (Debian package `prometheus`; "
                    "scripts/lib/deps.sh installs it)")
    p = metered_proxy
    sent = drive_traffic(p, servers)
    prom = Prometheus(binary, tmp_path, p.metrics_port)
    try:
        deadline = time.monotonic() + PROMETHEUS_WAIT
        assert prom.wait_ready(deadline), \
            f"prometheus not ready within {PROMETHEUS_WAIT}s (rc={prom.proc.poll()}):\n{prom.log_tail()}"
        expr = 'uringproxy_user_bytes_total{user="alice",direction="down"}'
        got, last = None, None
        while time.monotonic() < deadline:
            last = prom.query(expr)
            res = last.get("data", {}).get("result", []) if last.get("status") == "success" else []
            if res and float(res[0]["value"][1]) > 0:
                got = res[0]
                break
            time.sleep(0.5)
        assert got is not None, (f"Prometheus query {expr} returned no sample > 0 within "
                                 f"{PROMETHEUS_WAIT}s; last answer {last}; targets: "
                                 f"{http_get(prom.url + '/api/v1/targets')[2][:2000]}\n"
                                 f"{prom.log_tail()}")
        assert float(got["value"][1]) >= sent, got
        assert got["metric"].get("job") == "uringproxy", got
        # The scrape itself is healthy (Prometheus parsed the exposition without error).
        targets = json.loads(http_get(prom.url + "/api/v1/targets")[2])["data"]["activeTargets"]
        mine = [t for t in targets if t["scrapeUrl"].startswith(f"http://{prom.target}/")]
        assert mine and mine[0]["health"] == "up" and not mine[0]["lastError"], mine
        if p.upstream_live:
            up = None
            while time.monotonic() < deadline:
                r = prom.query('uringproxy_upstream_up{proxy="ms"}')["data"]["result"]
                up = r and float(r[0]["value"][1])
                if up == 1:
                    break
                time.sleep(0.5)
            assert up == 1, f"uringproxy_upstream_up{{proxy=\"ms\"}} = {up} for a live microsocks"
        # Every query of the shipped dashboard runs on real data without an error.
        dash = json.loads((REPO / "config" / "grafana-dashboard.json").read_text())
        exprs = [t["expr"] for pnl in dash["panels"] for t in pnl.get("targets", [])]
        assert len(exprs) >= 9
        empty = []
        for e in exprs:
            ans = prom.query(e.replace("$instance", ".*"))
            assert ans.get("status") == "success", f"dashboard query {e!r}: {ans}"
            if not ans["data"]["result"]:
                empty.append(e)
        # rate() needs two scrapes; everything else must have data by now.
        assert not [e for e in empty if "rate(" not in e and "increase(" not in e], empty
    finally:
        prom.stop()


# ---------------------------------------------------------------------------------------------
# The default address (issue 14 item 4): not node_exporter's 9100; a taken default only warns,
# a metrics.listen the operator wrote is fatal when taken.
DEFAULT_METRICS = ("127.0.0.1", 9089)


def _hold(addr):
    """Listen on addr; None when something else holds it already (it is taken either way)."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Past TIME_WAIT left by an earlier test; two listeners still cannot share the port.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(addr)
        s.listen(1)
        return s
    except OSError:
        s.close()
        return None


def _without_metrics_block(fresh_proxy):
    p = fresh_proxy(start=False)
    del p.config["metrics"]
    return p


def test_default_metrics_port_taken_starts_with_a_warning(fresh_proxy, servers):
    held = _hold(DEFAULT_METRICS)
    try:
        p = _without_metrics_block(fresh_proxy).start()
        lines = [ln for ln in p.stderr_lines() if "127.0.0.1:9089" in ln]
        assert lines, p.output_text()
        assert "warn:" in lines[0] and "metrics" in lines[0] and "not available" in lines[0], \
            lines
        r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
        assert r.rep == 0, r
        echo_roundtrip(r.sock, b"served without metrics")
        r.sock.close()
        # A reload tries the default again and does not stop the proxy either.
        p.signal(signal.SIGHUP)
        assert p.err.wait_for(lambda ln: "reloaded" in ln, 20), p.stderr_lines()[-10:]
        assert p.alive()
    finally:
        if held:
            held.close()


def test_explicit_metrics_listen_taken_is_fatal(fresh_proxy):
    held = _hold(("127.0.0.1", 0))
    port = held.getsockname()[1]
    try:
        p = fresh_proxy({"metrics": {"listen": f"127.0.0.1:{port}"}}, start=False)
        with pytest.raises(RuntimeError):
            p.start()
        p.stopped_on_purpose = True
        assert p.wait_exit() not in (0, None)
        text = p.output_text()
        assert f"metrics.listen: cannot listen on 127.0.0.1:{port}: Address already in use" in \
            text, text
        assert "info: ready:" not in text, text
    finally:
        held.close()


def test_default_metrics_address_serves(fresh_proxy):
    probe = _hold(DEFAULT_METRICS)
    if probe is None:
        pytest.skip("127.0.0.1:9089 is held by another process on this host")
    probe.close()
    p = _without_metrics_block(fresh_proxy).start()
    assert any("metrics on http://127.0.0.1:9089/metrics" in ln for ln in p.stderr_lines())
    status, _, body = http_get("http://127.0.0.1:9089/metrics")
    assert status == 200 and "uringproxy_config_generation" in body
