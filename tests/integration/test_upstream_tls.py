"""TLS upstreams (socks5s, https; docs/configuration.md#external_proxyjson): certificate and name verified by default, refused
(0x01 / 502, never direct) on a wrong CA, a wrong name or a server that does not speak TLS;
`verify: false` connects anyway; repeat connections resume the TLS session."""
import sys

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U
from servers import wait_until
from upstream_conftest import pw

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only


@pytest.fixture
def sentinel():
    t = U.AddrTarget("sentinel")
    yield t
    t.close()


def attempts(proxy, name, target):
    return {m: f(proxy, name, pw(name), "127.0.0.1", target.port) for m, f in U.TRIES.items()}


@pytest.mark.parametrize("name,what", [
    ("fwrongca", "socks5s, certificate from another CA"),
    ("fwrongname", "https, certificate for wrong.test"),
    ("ftlsplain", "socks5s to a plain SOCKS5 port"),
])
def test_tls_verification_failure_is_refused(uproxy, sentinel, name, what):
    got = attempts(uproxy, name, sentinel)
    assert got == {"socks": ("rep", 0x01), "connect": ("status", 502),
                   "forward": ("status", 502)}, f"{what}: {got}"
    assert sentinel.peers() == [], f"{what}: the target saw {sentinel.peers()}"


@pytest.mark.parametrize("name,exit_ip", [("fnoverify", U.DANTE_A_EXIT),
                                          ("fnoverifyhttps", U.TINYPROXY_EXIT)])
def test_verify_false_connects(uproxy, ustack, name, exit_ip):
    got = attempts(uproxy, name, ustack.target)
    assert got == {m: ("ok", exit_ip) for m in U.TRIES}, got


def test_ip_address_as_server_name(uproxy, ustack):
    """No tls.server_name: the address (127.0.0.1) is checked against the cert's IP SAN."""
    got = attempts(uproxy, "ivan", ustack.target)
    assert got == {m: ("ok", U.DANTE_A_EXIT) for m in U.TRIES}, got


@pytest.mark.parametrize("upstream,why", [("tls-wrongca", ("issuer", "verif", "certificate")),
                                          ("tls-wrongname", ("hostname", "name", "mismatch"))])
def test_verification_failure_is_logged_with_the_reason(uproxy, sentinel, upstream, why):
    """The operator learns which upstream failed TLS and why (from the health check or the
    dial), with no secret in the line."""
    name = {"tls-wrongca": "fwrongca", "tls-wrongname": "fwrongname"}[upstream]
    U.socks_try(uproxy, name, pw(name), "127.0.0.1", sentinel.port)

    def lines():
        return [ln for ln in uproxy.stderr_lines() if upstream in ln and not ln.startswith("{")]
    assert wait_until(lines, 10), f"no log line names the upstream {upstream}"
    text = "\n".join(lines()).lower()
    assert any(w in text for w in why), f"the reason is not given: {lines()}"


def test_tls_session_resumption(uproxy, ustack):
    """stunnel logs `previous session reused` when a client resumes: repeat connections to the
    same TLS upstream should."""
    def reused():
        return ustack.st_dante.log_text().count("previous session reused")
    before = reused()
    for _ in range(4):
        st = U.socks_try(uproxy, "alice", pw("alice"), "127.0.0.1", ustack.target.port)
        assert st == ("ok", U.DANTE_A_EXIT), st
    assert wait_until(lambda: reused() >= before + 2, 5), \
        f"stunnel saw {reused() - before} resumed sessions in 4 connections"
