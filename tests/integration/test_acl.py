"""Issue 5 / docs/configuration.md: target ACLs. deny_private (loopback, RFC 1918, link-local, CGNAT, ULA,
multicast, unspecified; on literals, on names, on resolved addresses, on IPv4-mapped IPv6 and on
the IPv4 address inside NAT64 / 6to4 addresses;
and non-canonical IPv4 spellings in HTTP URLs), allow / deny CIDRs (deny wins, allow opens the
private ranges it covers, a non-empty allow means only those targets), exact-host and *.suffix
entries, deny_ports, per-user lists, and --check on bad entries. Refusals: SOCKS5 0x02, HTTP 403;
a refused target is never contacted."""
import json
import subprocess
import time
import uuid

import pytest

from harness import base_config, merge, proxy_binary
from limits_helpers import (CountingEcho, echo_ok, hostport, http_connect_as, http_get_as,
                            never_contacted, password, socks5, start_proxy, stop_proxy, users,
                            watched)

pytestmark = pytest.mark.uringproxy_only


@pytest.fixture(scope="module")
def targets():
    """Our own loopback targets, so 'never contacted' is exact: an echo server, a second echo
    server whose port is in deny_ports."""
    echo, denied = CountingEcho(), CountingEcho()
    yield echo, denied
    echo.close()
    denied.close()


def _module_proxy(instances, overrides, doc):
    p = start_proxy(instances, overrides, doc)
    return p


@pytest.fixture(scope="module")
def _strict(instances, servers):
    p = _module_proxy(instances, {"acl": {"deny_private": True}}, users("ann"))
    yield p
    stop_proxy(p)


@pytest.fixture(scope="module")
def _allowlo(instances, servers):
    p = _module_proxy(instances, {"acl": {"deny_private": True, "allow": ["127.0.0.0/8"],
                                          "deny": ["127.0.0.2/32"]}}, users("ann"))
    yield p
    stop_proxy(p)


@pytest.fixture(scope="module")
def _lists(instances, servers, targets):
    doc = users("plain",
                ("restricted", {"deny": ["127.0.0.1/32", "*.internal.test", "secret.test"]}),
                ("narrow", {"allow": ["ok.test"]}))
    p = _module_proxy(instances, {"acl": {"deny_private": False,
                                          "deny": ["blocked.test", "*.evil.test"],
                                          "deny_ports": [targets[1].port]}}, doc)
    yield p
    stop_proxy(p)


@pytest.fixture
def strict(_strict):
    yield from watched(_strict)


@pytest.fixture
def allowlo(_allowlo):
    yield from watched(_allowlo)


@pytest.fixture
def lists(_lists):
    yield from watched(_lists)


def socks_refused(p, host, port, server, user="ann", codes=(0x02,)):
    before = server.accepted
    r = socks5(p.socks_port, host, port, user, password(user))
    r.close()
    assert r.auth_status == 0, f"{host}: auth failed: {r}"
    assert r.rep in codes, f"SOCKS5 CONNECT {user} -> {host}:{port}: want {codes}, got {r}"
    assert never_contacted(server, before), f"{host}: refused, yet the target was contacted"


def socks_allowed(p, host, port, user="ann"):
    r = socks5(p.socks_port, host, port, user, password(user))
    try:
        assert r.rep == 0, f"SOCKS5 CONNECT {user} -> {host}:{port} should be allowed: {r}"
        assert echo_ok(r.sock)
    finally:
        r.close()


def connect_refused(p, host, port, server, user="ann", codes=(403,)):
    before = server.accepted
    c, st = http_connect_as(p.http_port, host, port, user, password(user))
    c.close()
    assert st in codes, f"CONNECT {user} -> {hostport(host, port)}: want {codes}, got {st}"
    assert never_contacted(server, before), f"{host}: refused, yet the target was contacted"


def forward_refused(p, host, origin, user="ann", codes=(403,)):
    hp = hostport(host, origin.port)
    marker = uuid.uuid4().hex
    c, st = http_get_as(p.http_port, f"http://{hp}/bytes/3?{marker}", hp, user, password(user))
    c.close()
    assert st in codes, f"GET http://{hp}/ as {user}: want {codes}, got {st}"
    time.sleep(0.3)
    assert not origin.find(marker), f"GET http://{hp}/: refused, yet the origin saw the request"


# ---------------------------------------------------------------------------------------------
# deny_private: true
PRIVATE_V4 = ["127.0.0.1", "127.1.2.3", "0.0.0.0", "10.1.2.3", "172.16.5.4", "192.168.1.1",
              "169.254.1.1", "100.64.0.1", "224.0.0.1"]
PRIVATE_V6 = ["::1", "::", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:0.0.0.0", "fc00::1",
              "fd12:3456::1", "fe80::1", "ff02::1"]
PRIVATE_NAMES = ["localhost", "loop.test", "LOCALHOST", "localhost.", "v6.test"]
# Non-canonical IPv4 spellings of 127.0.0.1 (inet_aton accepts them all).
ODD_SPELLINGS = ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "127.1", "017700000001"]


@pytest.mark.parametrize("host", PRIVATE_V4 + PRIVATE_V6)
def test_socks5_private_literal_refused(strict, targets, host):
    socks_refused(strict, host, targets[0].port, targets[0])


# IPv6 forms that carry a private IPv4 address: NAT64 (64:ff9b::/96), 6to4 (2002::/16), and the
# IPv4-compatible form. Behind a NAT64 gateway 64:ff9b::7f00:1 is 127.0.0.1.
EMBEDDED_V4 = ["64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::c0a8:101", "2002:7f00:1::1",
               "2002:a9fe:a9fe::1", "::127.0.0.1"]


@pytest.mark.parametrize("host", EMBEDDED_V4)
def test_socks5_ipv4_embedded_in_ipv6_refused(strict, targets, host):
    """Refused by rule (0x02), not tried and failed as an unreachable IPv6 address."""
    socks_refused(strict, host, targets[0].port, targets[0])


@pytest.mark.parametrize("host", ["64:ff9b::7f00:1", "2002:7f00:1::1"])
def test_http_connect_ipv4_embedded_in_ipv6_refused(strict, targets, host):
    connect_refused(strict, host, targets[0].port, targets[0])


@pytest.mark.parametrize("host", PRIVATE_NAMES)
def test_socks5_name_resolving_to_private_refused(strict, targets, host):
    """Names (ATYP 3) that resolve to loopback: checked on the resolved address."""
    socks_refused(strict, host, targets[0].port, targets[0])


@pytest.mark.parametrize("host", ODD_SPELLINGS)
def test_socks5_odd_ipv4_spelling_as_name_never_connects(strict, targets, host):
    """A domain-name target spelled like a number (beyond the contract, which names HTTP URLs):
    refused one way or another (0x02 by rule, or 0x01 / 0x04 when it is treated as a name that
    does not resolve), never a connection to 127.0.0.1."""
    socks_refused(strict, host, targets[0].port, targets[0], codes=(0x01, 0x02, 0x04))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "loop.test", "::ffff:127.0.0.1", "::1",
                                  "0.0.0.0", "10.1.2.3"])
def test_http_connect_private_refused(strict, targets, host):
    connect_refused(strict, host, targets[0].port, targets[0])


@pytest.mark.parametrize("host", ODD_SPELLINGS)
def test_http_connect_odd_ipv4_spelling_refused(strict, targets, host):
    connect_refused(strict, host, targets[0].port, targets[0], codes=(400, 403))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "loop.test", "::ffff:127.0.0.1"])
def test_http_forward_private_refused(strict, servers, host):
    forward_refused(strict, host, servers.origin)


@pytest.mark.parametrize("host", ODD_SPELLINGS)
def test_http_forward_odd_ipv4_spelling_refused(strict, servers, host):
    """http://2130706433/, http://0177.0.0.1/, http://0x7f.0.0.1/ ...: 400 or 403, and the
    origin on 127.0.0.1 never sees the request."""
    forward_refused(strict, host, servers.origin, codes=(400, 403))


def test_strict_refusal_leaves_proxy_serving(strict, targets):
    """After all of the above the instance still authenticates and refuses cleanly."""
    r = socks5(strict.socks_port, "127.0.0.1", targets[0].port, "ann", "wrong-pw-acl")
    r.close()
    assert r.auth_status == 0x01, r


# ---------------------------------------------------------------------------------------------
# allow: ["127.0.0.0/8"], deny: ["127.0.0.2/32"] with deny_private: true
def test_allow_cidr_opens_loopback(allowlo, targets, servers):
    socks_allowed(allowlo, "127.0.0.1", targets[0].port)
    c, st = http_connect_as(allowlo.http_port, "127.0.0.1", targets[0].port, "ann",
                            password("ann"))
    try:
        assert st == 200, f"CONNECT 127.0.0.1 with allow 127.0.0.0/8: {st}"
        c.send(b"hello")
        assert c.read_n(5) == b"hello"
    finally:
        c.close()
    hp = hostport("127.0.0.1", servers.origin.port)
    c, st = http_get_as(allowlo.http_port, f"http://{hp}/bytes/7", hp, "ann", password("ann"))
    c.close()
    assert st == 200, f"GET http://{hp}/ with allow 127.0.0.0/8: {st}"


@pytest.mark.parametrize("host", ["127.0.0.2", "::ffff:127.0.0.2"])
def test_deny_wins_over_allow(allowlo, targets, host):
    """127.0.0.2 is inside the allowed 127.0.0.0/8 but explicitly denied (also when spelled as
    IPv4-mapped IPv6). The echo listens on 127.0.0.1 only, so 0x02 can only come from the rule."""
    socks_refused(allowlo, host, targets[0].port, targets[0])
    connect_refused(allowlo, host, targets[0].port, targets[0])


@pytest.mark.parametrize("host", ["::1", "10.0.0.1", "192.168.1.1", "192.0.2.1", "198.51.100.7"])
def test_nonempty_allow_means_only_those(allowlo, targets, host):
    """Private ranges outside the allow stay refused; a public address outside it too."""
    socks_refused(allowlo, host, targets[0].port, targets[0])


# ---------------------------------------------------------------------------------------------
# deny_private: false, deny: ["blocked.test", "*.evil.test"], deny_ports: [denied port]
@pytest.mark.parametrize("host", ["ok.test", "notevil.test", "evil.test.ok.test", "127.0.0.1"])
def test_names_not_listed_are_allowed(lists, targets, host):
    socks_allowed(lists, host, targets[0].port, user="plain")


@pytest.mark.parametrize("host", ["blocked.test", "x.evil.test", "a.b.evil.test"])
def test_host_and_suffix_deny(lists, targets, servers, host):
    socks_refused(lists, host, targets[0].port, targets[0], user="plain")
    connect_refused(lists, host, targets[0].port, targets[0], user="plain")
    forward_refused(lists, host, servers.origin, user="plain")


@pytest.mark.parametrize("host", ["BLOCKED.test", "X.Evil.TEST", "blocked.test.", "x.evil.test."])
def test_host_and_suffix_deny_other_spellings(lists, targets, host):
    """Host names are case-insensitive and a trailing dot names the same host: neither may
    slip past a deny entry."""
    socks_refused(lists, host, targets[0].port, targets[0], user="plain")
    connect_refused(lists, host, targets[0].port, targets[0], user="plain")


@pytest.mark.parametrize("host", ["127.0.0.1", "ok.test"])
def test_deny_ports(lists, targets, host):
    denied = targets[1]
    socks_refused(lists, host, denied.port, denied, user="plain")
    connect_refused(lists, host, denied.port, denied, user="plain")
    socks_allowed(lists, host, targets[0].port, user="plain")


def test_per_user_deny_does_not_affect_others(lists, targets, servers):
    echo = targets[0]
    # restricted: deny 127.0.0.1/32 (literal and after resolving ok.test), *.internal.test,
    # secret.test.
    for host in ("127.0.0.1", "ok.test", "x.internal.test", "secret.test"):
        socks_refused(lists, host, echo.port, echo, user="restricted")
    connect_refused(lists, "127.0.0.1", echo.port, echo, user="restricted")
    forward_refused(lists, "127.0.0.1", servers.origin, user="restricted")
    # plain: the same targets work.
    for host in ("127.0.0.1", "ok.test", "x.internal.test", "secret.test"):
        socks_allowed(lists, host, echo.port, user="plain")
    # The global deny still applies to restricted too.
    socks_refused(lists, "blocked.test", echo.port, echo, user="restricted")


def test_per_user_allow_means_only_those(lists, targets):
    echo = targets[0]
    socks_allowed(lists, "ok.test", echo.port, user="narrow")
    socks_refused(lists, "127.0.0.1", echo.port, echo, user="narrow")
    socks_refused(lists, "other.test", echo.port, echo, user="narrow")
    connect_refused(lists, "other.test", echo.port, echo, user="narrow")
    # The global deny_ports still applies to a target the user may reach.
    socks_refused(lists, "ok.test", targets[1].port, targets[1], user="narrow")
    # Other users are not narrowed.
    socks_allowed(lists, "other.test", echo.port, user="plain")


# ---------------------------------------------------------------------------------------------
# --check
def _check(tmp_path, overrides, users_doc=None):
    (tmp_path / "users.json").write_text(json.dumps(users_doc or users("u1")))
    cfg = tmp_path / "acl-bad.json"
    cfg.write_text(json.dumps(merge(base_config(11080, 18080, 15353), overrides)))
    r = subprocess.run([proxy_binary(), "--check", "--config", str(cfg)], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


@pytest.mark.parametrize("field,entry", [("deny", "10.0.0.1/33"), ("allow", "10.0.0.1/33"),
                                         ("deny", "::1/129"), ("allow", "10.0.0.0/x")])
def test_check_refuses_bad_acl_entry(tmp_path, field, entry):
    rc, out = _check(tmp_path, {"acl": {field: ["10.0.0.0/8", entry]}})
    assert rc == 1, f"acl.{field} {entry!r}: exit {rc}, want 1:\n{out}"
    assert "acl-bad.json" in out, f"errors do not name the file:\n{out}"
    assert field in out, f"errors do not name the field acl.{field}:\n{out}"


@pytest.mark.parametrize("ports", [[70000], [-1], ["http"]])
def test_check_refuses_bad_deny_ports(tmp_path, ports):
    rc, out = _check(tmp_path, {"acl": {"deny_ports": ports}})
    assert rc == 1, f"deny_ports {ports}: exit {rc}, want 1:\n{out}"
    assert "acl-bad.json" in out and "deny_ports" in out, out


def test_check_refuses_unknown_acl_field(tmp_path):
    rc, out = _check(tmp_path, {"acl": {"deny_privat": True}})
    assert rc == 1, f"exit {rc}, want 1:\n{out}"
    assert "acl-bad.json" in out and "deny_privat" in out, out


def test_check_refuses_bad_user_acl_entry(tmp_path):
    rc, out = _check(tmp_path, {}, users(("u1", {"deny": ["10.0.0.1/33"]})))
    assert rc == 1, f"exit {rc}, want 1:\n{out}"
    assert "users.json" in out and "deny" in out, out


def test_check_accepts_every_acl_form(tmp_path):
    rc, out = _check(tmp_path, {"acl": {"deny_private": True,
                                        "allow": ["127.0.0.0/8", "::1/128", "ok.test"],
                                        "deny": ["127.0.0.2/32", "blocked.test", "*.evil.test"],
                                        "deny_ports": [25, 6379]}},
                     users(("u1", {"allow": ["10.0.0.0/8"], "deny": ["*.evil.test"]})))
    assert rc == 0, out
