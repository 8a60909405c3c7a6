"""Groups (docs/configuration.md#route-selection step 2, 2.5): `user.group` picks a healthy member by the group's policy;
a group the user may not use is refused (0x02 / 403); no healthy member falls back to the
user's own route (`group_fallback: default`) or is refused (`reject`: 0x01 / 502); a dead
member is skipped; nothing ever leaves directly unless the user's own route is direct."""
import sys

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U
from servers import wait_until
from upstream_conftest import main_proxies, pw, up_config, user

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only

N = 8


def exits(proxy, target, name, base, modes=("socks", "connect"), n=N):
    out = []
    for i in range(n):
        m = modes[i % len(modes)]
        st, got = U.TRIES[m](proxy, name, pw(base), "127.0.0.1", target.port)
        assert st == "ok", f"{name} via {m}, try {i}: {st} {got}"
        out.append(got)
    return out


def test_round_robin_uses_both_members(uproxy, ustack):
    mark = ustack.target.mark()
    seen = exits(uproxy, ustack.target, "alice.us-east", "alice", n=10)
    assert set(seen) == {U.DANTE_A_EXIT, U.DANTE_B_EXIT}, seen
    assert U.DIRECT not in ustack.target.peers(mark)


def test_round_robin_across_member_types(uproxy, ustack):
    """A group mixing a socks5 and an http member."""
    seen = exits(uproxy, ustack.target, "alice.mix", "alice", n=10)
    assert set(seen) == {U.DANTE_A_EXIT, U.TINYPROXY_EXIT}, seen


def test_round_robin_on_http_forward(uproxy, ustack):
    seen = exits(uproxy, ustack.target, "alice.us-east", "alice", modes=("forward",), n=10)
    assert set(seen) == {U.DANTE_A_EXIT, U.DANTE_B_EXIT}, seen


@pytest.mark.parametrize("base", ["alice", "charlie"])
def test_hash_user_is_sticky(uproxy, ustack, base):
    seen = exits(uproxy, ustack.target, f"{base}.sticky", base,
                 modes=("socks", "connect", "forward"), n=9)
    assert len(set(seen)) == 1, f"{base}.sticky left by {seen}"
    assert seen[0] in (U.DANTE_A_EXIT, U.DANTE_B_EXIT), seen


def test_least_conn_spreads_held_tunnels(uproxy, ustack):
    """least_conn: with tunnels held open, new ones go to the member with fewer. Three held
    tunnels cover both members however the connections spread over the workers."""
    from clients import socks5_open
    t = U.AddrTarget("lc-target")
    held = []
    try:
        for _ in range(3):
            r = socks5_open(uproxy.socks_port, "127.0.0.1", t.port, user="alice.lc",
                            pw=pw("alice"))
            assert r.rep == 0, r
            held.append(r.sock)
            assert wait_until(lambda: len(t.peers()) == len(held), 10)
        assert set(t.peers()) == {U.DANTE_A_EXIT, U.DANTE_B_EXIT}, t.peers()
    finally:
        for s in held:
            s.close()
        t.close()


def test_groups_absent_means_any_group(uproxy, ustack):
    seen = exits(uproxy, ustack.target, "charlie.us-east", "charlie", n=4)
    assert set(seen) <= {U.DANTE_A_EXIT, U.DANTE_B_EXIT}, seen


def test_group_not_allowed_is_refused(uproxy, ustack):
    """bob may use us-east only: bob.sticky is 0x02 / 403 and reaches nothing."""
    sentinel = U.AddrTarget("sentinel")
    try:
        got = {m: f(uproxy, "bob.sticky", pw("bob"), "127.0.0.1", sentinel.port)
               for m, f in U.TRIES.items()}
        assert got == {"socks": ("rep", 0x02), "connect": ("status", 403),
                       "forward": ("status", 403)}, got
        assert sentinel.peers() == [], sentinel.peers()
        # ... and alice, whose list does not name `nowhere`, is refused before any lookup.
        st = U.socks_try(uproxy, "alice.nowhere", pw("alice"), "127.0.0.1", sentinel.port)
        assert st == ("rep", 0x02), st
    finally:
        sentinel.close()


def test_group_allowed_user_with_wrong_password_is_407(uproxy, ustack):
    """Step 1 comes first: the base name authenticates."""
    st = U.socks_try(uproxy, "alice.us-east", "nope", "127.0.0.1", ustack.target.port)
    assert st == ("auth", 0x01), st
    st = U.connect_try(uproxy, "alice.us-east", "nope", "127.0.0.1", ustack.target.port)
    assert st == ("status", 407), st


@pytest.mark.parametrize("base,want", [("erin", U.TINYPROXY_EXIT), ("charlie", U.DIRECT),
                                       ("dan", U.DANTE_A_EXIT)])
def test_unknown_group_falls_back_to_own_route(uproxy, ustack, base, want):
    """group_fallback: default - a group no upstream names goes on to the user's own route."""
    for m in ("socks", "connect", "forward"):
        st = U.TRIES[m](uproxy, f"{base}.nowhere", pw(base), "127.0.0.1", ustack.target.port)
        assert st == ("ok", want), f"{base}.nowhere via {m}: {st}"


def test_dead_member_is_skipped(uproxy, ustack):
    """Group `half`: one live member (dante A), one on a closed port. Every connection works,
    through the live one."""
    mark = ustack.target.mark()
    seen = exits(uproxy, ustack.target, "alice.half", "alice", modes=("socks", "connect",
                                                                       "forward"), n=9)
    assert set(seen) == {U.DANTE_A_EXIT}, seen
    assert U.DIRECT not in ustack.target.peers(mark)


@pytest.mark.parametrize("base,want", [("erin", U.TINYPROXY_EXIT), ("dan", U.DANTE_A_EXIT),
                                       ("charlie", U.DIRECT)])
def test_group_with_only_member_down_falls_back(uproxy, ustack, base, want):
    """Group `dead`: its only member is on a closed port. Once it is marked down (health check
    or the first failed dial), the user's own route is used. Before that a connection may be
    refused, but never leaves any other way."""
    sentinel = U.AddrTarget("sentinel")
    try:
        tries = []

        def attempt():
            st = U.socks_try(uproxy, f"{base}.dead", pw(base), "127.0.0.1", sentinel.port)
            tries.append(st)
            return st == ("ok", want)

        assert wait_until(attempt, 20, interval=0.3), f"{base}.dead: {tries[-5:]}"
        bad = [t for t in tries if t[0] == "ok" and t[1] != want]
        assert not bad, f"{base}.dead left another way: {bad}"
        for m in ("connect", "forward"):
            st = U.TRIES[m](uproxy, f"{base}.dead", pw(base), "127.0.0.1", sentinel.port)
            assert st == ("ok", want), f"{base}.dead via {m}: {st}"
        assert set(sentinel.peers()) == {want}, sentinel.peers()
    finally:
        sentinel.close()


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reject_proxy(up_instances, ustack):
    """group_fallback: reject."""
    users = {"users": [user("erin", "proxy-http"), user("charlie", None),
                       user("alice", "proxy-us", ["us-east", "dead"])]}
    proxies = [p for p in main_proxies(ustack)
               if p["id"] in ("proxy-http", "proxy-us", "g-a", "g-b", "d-only")]
    cfg = up_config(ustack, routing={"on_failure": "reject", "group_fallback": "reject"},
                    groups={"us-east": {"policy": "round_robin"}, "dead": {}})
    return up_instances.make("up-reject", cfg, users, proxies)


@pytest.fixture
def rproxy(reject_proxy):
    from upstream_conftest import watched
    yield from watched(reject_proxy)


@pytest.mark.parametrize("base", ["erin", "charlie"])
def test_unknown_group_with_fallback_reject(rproxy, base):
    sentinel = U.AddrTarget("sentinel")
    try:
        got = {m: f(rproxy, f"{base}.nowhere", pw(base), "127.0.0.1", sentinel.port)
               for m, f in U.TRIES.items()}
        assert got == {"socks": ("rep", 0x01), "connect": ("status", 502),
                       "forward": ("status", 502)}, got
        assert sentinel.peers() == [], sentinel.peers()
    finally:
        sentinel.close()


@pytest.mark.parametrize("base", ["erin", "charlie", "alice"])
def test_group_with_only_member_down_and_fallback_reject(rproxy, base):
    """Fail closed: refused every time (0x01 once marked down; any of 0x01-0x06 before), and
    the target sees nothing - not the user's own route, not a direct connection."""
    sentinel = U.AddrTarget("sentinel")
    try:
        tries = []

        def attempt():
            st = U.socks_try(rproxy, f"{base}.dead", pw(base), "127.0.0.1", sentinel.port)
            tries.append(st)
            return st == ("rep", 0x01)

        assert wait_until(attempt, 20, interval=0.3), f"{base}.dead: {tries[-5:]}"
        assert all(t[0] == "rep" and 1 <= t[1] <= 6 for t in tries), tries
        for m in ("connect", "forward"):
            st = U.TRIES[m](rproxy, f"{base}.dead", pw(base), "127.0.0.1", sentinel.port)
            assert st == ("status", 502), f"{base}.dead via {m}: {st}"
        assert sentinel.peers() == [], sentinel.peers()
    finally:
        sentinel.close()


def test_healthy_group_unaffected_by_fallback_reject(rproxy, ustack):
    seen = exits(rproxy, ustack.target, "alice.us-east", "alice", n=8)
    assert set(seen) == {U.DANTE_A_EXIT, U.DANTE_B_EXIT}, seen
