"""Routing in /metrics (docs/wire.md#observability): uringproxy_upstream_up{proxy} follows health (down on a
closed port, up for a live upstream, down after kill -9, up again after restart);
uringproxy_route_total{route} counts direct and per-upstream connections;
uringproxy_connect_duration_seconds counts upstream handshakes."""
import http.client
import re
import time
import urllib.request

import sys

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U  # noqa: E402
from servers import closed_port, free_port, wait_until  # noqa: E402
from upstream_conftest import pw, socks, up_config, user  # noqa: E402

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only


SCRAPES = {"ok": 0, "failed": []}


def scrape(port):
    """GET /metrics; a failed scrape is retried (twice) and recorded, so the test checks what
    it is about and still reports an endpoint that dropped a request (see check_scrapes)."""
    for attempt in range(3):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            SCRAPES["ok"] += 1
            break
        except (OSError, http.client.HTTPException) as e:
            SCRAPES["failed"].append(f"{time.strftime('%H:%M:%S')} {type(e).__name__}: {e}")
            if attempt == 2:
                raise
    out = {}
    for ln in text.splitlines():
        if ln.startswith("#") or not ln.strip():
            continue
        m = re.match(r"^(\S+)\s+(\S+)$", ln)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def metric(port, name):
    return scrape(port).get(name)


@pytest.fixture
def metered(up_factory, ustack, tmp_path):
    """A private instance with /metrics on, its own dante (to kill), and two more routes."""
    dante = U.Dante(tmp_path / "dante-m", external=U.DANTE_A_EXIT, auth=False).start()
    try:
        yield from _metered(up_factory, ustack, dante)
    finally:
        dante.stop()


def _metered(up_factory, ustack, dante):
    mport = free_port()
    proxies = [socks("m-live", dante.port, creds=False),
               socks("m-dead", closed_port(), creds=False),
               dict(socks("m-http", ustack.tiny.port), type="http",
                    username=U.HTTP_USER, password=U.HTTP_PASSWORD)]
    users = {"users": [user("mlive", "m-live"), user("mdead", "m-dead"), user("mhttp", "m-http"),
                       user("charlie", None)]}
    cfg = up_config(ustack, metrics={"listen": f"127.0.0.1:{mport}"})
    p = up_factory("up-metrics", cfg, users, proxies)
    p.metrics_port = mport
    p.dante = dante
    SCRAPES["ok"], SCRAPES["failed"] = 0, []
    yield p
    failed = SCRAPES["failed"]
    assert not failed, (f"/metrics dropped {len(failed)} of {SCRAPES['ok'] + len(failed)} "
                        f"scrapes (no response): {failed[:5]}")


def up_gauge(p, proxy):
    return metric(p.metrics_port, f'uringproxy_upstream_up{{proxy="{proxy}"}}')


def test_upstream_up_follows_health(metered):
    p = metered
    assert wait_until(lambda: up_gauge(p, "m-dead") == 0, 10), up_gauge(p, "m-dead")
    assert wait_until(lambda: up_gauge(p, "m-live") == 1, 10), up_gauge(p, "m-live")
    assert wait_until(lambda: up_gauge(p, "m-http") == 1, 10), up_gauge(p, "m-http")
    p.dante.kill9()
    t0 = time.monotonic()
    assert wait_until(lambda: up_gauge(p, "m-live") == 0, 15), \
        f"m-live still {up_gauge(p, 'm-live')} 15 s after kill -9"
    down_after = time.monotonic() - t0
    p.dante.start()
    t0 = time.monotonic()
    assert wait_until(lambda: up_gauge(p, "m-live") == 1, 20), \
        f"m-live still {up_gauge(p, 'm-live')} 20 s after restart"
    print(f"down seen after {down_after:.1f} s, up again after {time.monotonic() - t0:.1f} s")


def test_route_total_counts_each_route(metered, ustack):
    p = metered
    assert wait_until(lambda: up_gauge(p, "m-live") == 1, 10)
    before = scrape(p.metrics_port)

    def delta(route):
        key = f'uringproxy_route_total{{route="{route}"}}'
        return scrape(p.metrics_port).get(key, 0) - before.get(key, 0)
    for name, want in (("mlive", U.DANTE_A_EXIT), ("mhttp", U.TINYPROXY_EXIT),
                       ("charlie", U.DIRECT)):
        for _ in range(3):
            st = U.socks_try(p, name, pw(name), "127.0.0.1", ustack.target.port)
            assert st == ("ok", want), (name, st)
    assert wait_until(lambda: (delta("m-live"), delta("m-http"), delta("direct")) == (3, 3, 3),
                      10), (delta("m-live"), delta("m-http"), delta("direct"))
    for _ in range(2):
        st = U.socks_try(p, "mdead", pw("mdead"), "127.0.0.1", ustack.target.port)
        assert st[0] == "rep" and 1 <= st[1] <= 6, st
    assert wait_until(lambda: delta("direct") == 3, 2), "a refused upstream route counted direct"
    assert wait_until(lambda: delta("reject") >= 2 or delta("m-dead") >= 2, 10), \
        {k: v for k, v in scrape(p.metrics_port).items() if "route_total" in k}


def test_connect_duration_histogram_counts_upstream_handshakes(metered, ustack):
    p = metered
    assert wait_until(lambda: up_gauge(p, "m-live") == 1, 10)
    before = metric(p.metrics_port, "uringproxy_connect_duration_seconds_count") or 0
    for _ in range(4):
        st = U.socks_try(p, "mlive", pw("mlive"), "127.0.0.1", ustack.target.port)
        assert st == ("ok", U.DANTE_A_EXIT), st
    assert wait_until(lambda: (metric(p.metrics_port, "uringproxy_connect_duration_seconds_count")
                               or 0) - before >= 4, 10)
