"""Reverse agents (issue 12) for VLESS users: a user on the gateway's VLESS-over-TLS listener
whose route leads to an agent (the real `uringproxy agent`, egress 127.0.0.2) is carried by it
(the target reports the address it saw; the access log says `agent:ID`), and a target the agent
finds refused closes the VLESS connection cleanly, with no response header.

A VLESS header carries no username, so the `user.group` form cannot pick a group: a VLESS user
is routed by their `external_proxy_id` (docs/configuration.md, "Route selection"), which names
an agent as `agent:ID` (its name in the access log). `uringproxyctl set-proxy` takes that name
too, and `agent del` refuses an agent a user is routed through."""
import subprocess

import pytest

from clients import recv_exact
from harness import proxy_binary
from servers import closed_port, free_port, wait_until
from test_agents import gateway, read_peer, who  # noqa: F401 (fixtures)
from test_agents_cpp import cpp_agent  # noqa: F401 (fixture)
from test_vless import closed_without_reply, header, tls_open

pytestmark = pytest.mark.uringproxy_only

ALICE_UUID = "5b0f3a52-8c1e-4d6f-9a27-3e8b41c0d9f4"
ROUTE = "agent:home-1"  # alice's external_proxy_id: the agent home-1


def vless_gateway(gateway):  # noqa: F811 (the fixture, passed on)
    """The agent gateway of test_agents.py plus a VLESS listener (its certificate), alice with a
    uuid and her route to the agent home-1; `--check` accepts it."""
    gw = gateway(start=False)
    gw.vless_port = free_port()
    gw.config["listeners"].append({"name": "vless", "protocol": "vless",
                                   "listen": f"127.0.0.1:{gw.vless_port}",
                                   "tls": {"cert": str(gw.cert),
                                           "key": str(gw.cert.with_suffix(".key"))}})
    for u in gw.users["users"]:
        if u["username"] == "alice":
            u["uuid"] = ALICE_UUID
            u["external_proxy_id"] = ROUTE
    gw.write_files()
    r = subprocess.run([proxy_binary(), "--check", "--config", str(gw.config_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    gw.start()
    return gw


def vless_via_agent(gateway, cpp_agent):  # noqa: F811 (the fixtures, passed on)
    """vless_gateway with the agent home-1 connected: the gateway, its access-log mark before
    any tunnel, and the agent."""
    gw = vless_gateway(gateway)
    start = gw.mark()
    a = cpp_agent(gw, "home-1")
    a.wait_ready()
    return gw, start, a


def test_vless_user_through_an_agent(gateway, cpp_agent, who):  # noqa: F811
    gw, start, _ = vless_via_agent(gateway, cpp_agent)
    s = tls_open(gw.vless_port)
    try:
        s.sendall(header(ALICE_UUID, "127.0.0.1", who.port) + b"hello-vless")
        assert recv_exact(s, 2) == b"\x00\x00"
        assert read_peer(s) == "127.0.0.2"  # the agent's egress, not the gateway's
        assert recv_exact(s, 11) == b"hello-vless"
        s.sendall(b"x" * 100000)
        assert recv_exact(s, 100000) == b"x" * 100000
    finally:
        s.close()
    line = gw.wait_access_log(lambda r: r.get("user") == "alice", start=start)
    assert line and line["route"] == ROUTE and line["result"] == "ok", line
    assert line["bytes_up"] == 11 + 100000, line


def test_vless_refused_target_closes_cleanly(gateway, cpp_agent, who):  # noqa: F811
    gw, start, a = vless_via_agent(gateway, cpp_agent)
    s = tls_open(gw.vless_port)
    try:
        # The agent answers "refused": the VLESS connection closes with no response header.
        s.sendall(header(ALICE_UUID, "127.0.0.1", closed_port()) + b"data")
        assert closed_without_reply(s) == b""
    finally:
        s.close()
    line = gw.wait_access_log(lambda r: r.get("user") == "alice", start=start)
    assert line and line["route"] == ROUTE and line["result"] == "refused", line
    # The agent logs the refusal after it answers the gateway: wait for the line.
    assert wait_until(lambda: a.has("refused"), 20), a.lines[-5:]
    # The agent's link that carried it was replaced: the next VLESS tunnel is served.
    s = tls_open(gw.vless_port)
    try:
        s.sendall(header(ALICE_UUID, "127.0.0.1", who.port))
        assert recv_exact(s, 2) == b"\x00\x00"
        assert read_peer(s) == "127.0.0.2"
    finally:
        s.close()
    assert gw.alive()


def test_set_proxy_names_an_agent(gateway, cpp_agent, who):  # noqa: F811
    from ctl_helpers import run_ctl
    from test_agents import via_socks
    gw = gateway(extra={"control": {"socket": "run/control.sock"}})
    sock = str(gw.workdir / "run" / "control.sock")

    def ctl(*args):
        return run_ctl(["--socket", sock] + list(args))

    r = ctl("set-proxy", "bob", "agent:nobody")
    assert r.rc == 1 and "agent:ID" in r.err, r
    assert ctl("set-proxy", "bob", ROUTE).rc == 0
    r = ctl("--json", "show-proxy", "bob")
    assert r.rc == 0 and r.json()["proxy"]["id"] == ROUTE, r
    assert r.json()["proxy"]["type"] == "agent" and not r.json()["proxy"]["up"], r
    # Not connected: the route's on_failure (routing's default, reject) applies.
    assert via_socks(gw, "bob", who.port)[0] == 0x01
    cpp_agent(gw, "home-1").wait_ready()
    # A plain login (no user.group form) leaves through the agent its route names.
    assert via_socks(gw, "bob", who.port) == (0, "127.0.0.2")
    r = ctl("--json", "show-proxy", "bob")
    assert r.rc == 0 and r.json()["proxy"]["id"] == ROUTE and r.json()["proxy"]["up"], r
    r = ctl("agent", "del", "home-1")
    assert r.rc == 1 and "bob" in r.err and "set-proxy bob none" in r.err, r
    assert ctl("set-proxy", "bob", "none").rc == 0
    assert ctl("agent", "del", "home-1").rc == 0
    assert via_socks(gw, "bob", who.port) == (0, "127.0.0.1")
