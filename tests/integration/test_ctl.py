"""uringproxyctl against the real daemon (docs/uringproxyctl.md, docs/control-protocol.md,
docs/uringproxyctl.md): every command in human form and with --json, exit codes 0/1/2, the
control socket's mode, and the live effects of edits on logins and open tunnels."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import threading
import time

import pytest

from clients import (connect, echo_roundtrip, recv_exact, socks5_auth, socks5_greeting,
                     socks5_open, stream_end)
from ctl_helpers import (ALICE_UUID, NEW_PASSWORDS, OUTPUTS, REC_PASSWORD, REC_USER, CtlDaemon,
                         ctl_users, leaked_secrets, run_ctl, start_ctl_daemon, wait_control, wait_for)
from harness import PASSWORDS
from servers import closed_port
from upstreams import RecordingSocks5

pytestmark = pytest.mark.uringproxy_only

CLOSE_BOUND = 5.0  # "within a second", with room for a loaded 2-core machine


@pytest.fixture(scope="module")
def recorder():
    r = RecordingSocks5(user=REC_USER, password=REC_PASSWORD)
    yield r
    r.close()


@pytest.fixture
def ctld(fresh_proxy, recorder):
    start = len(OUTPUTS)
    d = start_ctl_daemon(fresh_proxy, recorder.port)
    yield d
    text = d.p.output_text() + "\n".join(r.out + r.err for r in OUTPUTS[start:])
    leaked = leaked_secrets(text)
    assert not leaked, f"a password showed up in the daemon's or uringproxyctl's output: {leaked}"


def tunnel(d: CtlDaemon, servers, user, pw=None):
    """An open SOCKS5 tunnel to the echo server, checked with one round trip."""
    r = socks5_open(d.p.socks_port, "127.0.0.1", servers.echo.port, user=user,
                    pw=pw if pw is not None else PASSWORDS.get(user) or NEW_PASSWORDS[user])
    assert r.auth_status in (None, 0) and r.rep == 0, f"{user}: {r}"
    echo_roundtrip(r.sock, os.urandom(512))
    return r.sock


def login_refused(d: CtlDaemon, servers, user, pw) -> bool:
    r = socks5_open(d.p.socks_port, "127.0.0.1", servers.echo.port, user=user, pw=pw)
    r.sock.close()
    return r.auth_status == 1


def closed_within(sock, bound=CLOSE_BOUND):
    t0 = time.monotonic()
    how = stream_end(sock, timeout=bound)
    return how, time.monotonic() - t0


def table(out: str):
    """Rows of an aligned table split on runs of 2+ spaces."""
    return [re.split(r"\s{2,}", ln.strip()) for ln in out.splitlines() if ln.strip()]


def assert_users_file_ok(d: CtlDaemon, mode=0o640):
    doc = d.users_file()  # valid JSON
    assert isinstance(doc.get("users"), list)
    assert stat.S_IMODE(d.users_path.stat().st_mode) == mode, oct(d.users_path.stat().st_mode)
    return doc


# ---------------------------------------------------------------------------------------------
# Without a daemon: help, usage errors, an unreachable socket.
HELP_PATHS = [[], ["status"], ["reload"], ["stats"], ["user"], ["user", "list"], ["user", "add"],
              ["user", "del"], ["user", "passwd"], ["user", "enable"], ["user", "disable"],
              ["set-proxy"], ["show-proxy"], ["list-proxy-assignments"], ["proxy"],
              ["proxy", "list"], ["proxy", "add"], ["proxy", "del"], ["proxy", "enable"],
              ["proxy", "disable"], ["proxy", "test"], ["connections"], ["kick"]]


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "top")
def test_help_every_command(path):
    r = run_ctl(path + ["--help"])
    assert r.rc == 0, r
    assert "Usage:" in r.out, r
    if path:
        assert path[-1] in r.out.splitlines()[1] or path[-1] in r.out, r


@pytest.mark.parametrize("args", [
    [],                                         # no command
    ["frobnicate"],                             # unknown command
    ["user"],                                   # user needs a subcommand
    ["user", "add"],                            # missing NAME
    ["user", "del"],
    ["set-proxy", "alice"],                     # missing ID
    ["show-proxy"],
    ["kick"],
    ["proxy", "add", "--id", "x"],              # missing --type/--address/--port
    ["proxy", "add", "--id", "x", "--type", "ftp", "--address", "h", "--port", "1"],
    ["proxy", "add", "--id", "x", "--type", "socks5", "--address", "h", "--port", "70000"],
    ["--socket", "/tmp/a", "--config", "/tmp/b", "status"],
    ["status", "extra"],
], ids=lambda a: " ".join(a) or "empty")
def test_usage_errors_exit_2(args):
    r = run_ctl(["--socket", "/nonexistent/ctl.sock"] + args
                if "--socket" not in args else args)
    assert r.rc == 2, r
    assert r.err.strip(), r


def test_daemon_down_exit_2(tmp_path):
    sock = tmp_path / "nowhere" / "control.sock"
    r = run_ctl(["--socket", str(sock), "status"])
    assert r.rc == 2, r
    assert f"cannot connect to {sock}" in r.err, r
    assert "No such file or directory" in r.err and "is uringproxy running?" in r.err, r
    # The same through --config: the socket is resolved against the config file's directory.
    cfg = tmp_path / "conf" / "uringproxy.json"
    cfg.parent.mkdir()
    cfg.write_text('// comments are fine\n{"control": {"socket": "sub/ctl.sock"},}\n')
    r = run_ctl(["--config", str(cfg), "--json", "status"])
    assert r.rc == 2, r
    assert f"cannot connect to {tmp_path}/conf/sub/ctl.sock" in r.err, r
    assert r.out == "", r
    # Default without control: <config dir>/run/control.sock.
    cfg.write_text('{"workers": 1}')
    r = run_ctl(["--config", str(cfg), "status"])
    assert r.rc == 2 and f"{tmp_path}/conf/run/control.sock" in r.err, r
    # Neither flag: run/control.sock under the working directory.
    r = run_ctl(["status"], cwd=str(tmp_path))
    assert r.rc == 2 and f"{tmp_path}/run/control.sock" in r.err, r
    # An unreadable config is a usage error too.
    r = run_ctl(["--config", str(tmp_path / "missing.json"), "status"])
    assert r.rc == 2 and "missing.json" in r.err, r


def test_socket_not_a_daemon(tmp_path):
    """Something listening that closes without answering: exit 2 with the reason."""
    import socket as so
    path = tmp_path / "mute.sock"
    srv = so.socket(so.AF_UNIX)
    srv.bind(str(path))
    srv.listen(4)

    def serve():
        c, _ = srv.accept()
        c.recv(100)
        c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    r = run_ctl(["--socket", str(path), "status"])
    srv.close()
    assert r.rc == 2 and "without an answer" in r.err, r


def test_answer_timeout(tmp_path):
    import socket as so
    path = tmp_path / "slow.sock"
    srv = so.socket(so.AF_UNIX)
    srv.bind(str(path))
    srv.listen(4)
    t0 = time.monotonic()
    r = run_ctl(["--socket", str(path), "--timeout", "0.5", "status"])
    srv.close()
    assert r.rc == 2 and "no answer" in r.err, r
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------------------------------------
# The control socket.
def test_socket_mode_and_config_lookup(ctld, tmp_path):
    st = ctld.socket.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(ctld.socket.parent.stat().st_mode) & 0o077 == 0, \
        oct(ctld.socket.parent.stat().st_mode)
    # --config from another directory finds the relative control.socket.
    r = run_ctl(["--config", str(ctld.p.config_path), "status"], cwd=str(tmp_path))
    assert r.rc == 0, r
    assert "version:" in r.out


def test_default_socket_path(fresh_proxy, recorder, tmp_path):
    d = start_ctl_daemon(fresh_proxy, recorder.port, control=False)
    assert d.socket == d.workdir / "run" / "control.sock"
    assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600
    r = run_ctl(["status"], cwd=str(d.workdir))  # run/control.sock relative to the cwd
    assert r.rc == 0, r
    r = run_ctl(["--config", str(d.p.config_path), "status"], cwd=str(tmp_path))
    assert r.rc == 0, r


# ---------------------------------------------------------------------------------------------
# Read-only commands.
def test_status(ctld):
    r = ctld.ctl("status")
    assert r.rc == 0, r
    kv = dict(ln.split(": ", 1) for ln in r.lines())
    for k in ("version", "uptime_s", "workers", "generation", "connections_active"):
        assert k in kv, r
    assert kv["workers"] == "2"
    r, j = ctld.ctl_json("status")
    assert r.rc == 0 and j["ok"] is True, r
    assert isinstance(j["version"], str) and j["workers"] == 2
    for k in ("uptime_s", "generation", "connections_active"):
        assert isinstance(j[k], int) and j[k] >= 0, j
    assert isinstance(j["ktls"], bool), j


def test_stats(ctld, servers):
    s = tunnel(ctld, servers, "bob")
    try:
        r, j = ctld.ctl_json("stats")
        assert r.rc == 0, r
        for k in ("connections_total", "connections_active", "bytes_up", "bytes_down",
                  "auth_failures"):
            assert isinstance(j[k], int), j
        assert j["connections_active"] >= 1 and j["connections_total"] >= 1, j
        bob = [u for u in j["users"] if u["user"] == "bob"]
        assert bob and bob[0]["connections_active"] == 1, j
        assert set(bob[0]) >= {"user", "connections_active", "connections_total", "bytes_up",
                               "bytes_down"}
        r = ctld.ctl("stats")
        assert r.rc == 0, r
        assert re.search(r"^connections_active: \d+$", r.out, re.M), r
        rows = table(r.out.split("\n\n", 1)[1])
        assert rows[0] == ["USER", "ACTIVE", "TOTAL", "UP", "DOWN"], r
        assert any(row[0] == "bob" and row[1] == "1" for row in rows[1:]), r
    finally:
        s.close()


def test_user_list(ctld):
    r = ctld.ctl("user", "list")
    assert r.rc == 0, r
    rows = table(r.out)
    assert rows[0] == ["USER", "STATUS", "PROXY ID", "GROUPS", "MAX CONN", "BANDWIDTH", "EMAIL",
                       "UUID"], r
    by = {row[0]: row for row in rows[1:]}
    assert set(by) >= {"alice", "bob", "carol", "dave", "erin"}, r
    assert by["alice"][1:] == ["✓ Enabled", "rec", "(any)", "unlimited (default)",
                               "unlimited (default)", "alice@vless.local", ALICE_UUID], r
    assert by["dave"][1] == "✗ Disabled" and by["bob"][2] == "(none)", r
    assert "$6$" not in r.out and "$y$" not in r.out and "$2b$" not in r.out
    r, j = ctld.ctl_json("user", "list")
    assert r.rc == 0
    users = {u["username"]: u for u in j["users"]}
    assert users["alice"]["external_proxy_id"] == "rec" and users["bob"]["external_proxy_id"] is None
    assert users["alice"]["email"] == "alice@vless.local" and users["alice"]["uuid"] == ALICE_UUID
    assert users["dave"]["enabled"] is False and users["alice"]["enabled"] is True
    assert all("password" not in u for u in j["users"]), j
    assert "$6$" not in r.out and "$y$" not in r.out


# ---------------------------------------------------------------------------------------------
# User edits.
def test_user_add_then_login(ctld, servers):
    before = ctld.users_path.read_text()
    r = ctld.ctl("user", "add", "frank", "--password-stdin", input=NEW_PASSWORDS["frank"] + "\n")
    assert r.rc == 0, r
    assert r.out.startswith("✓ Added user frank"), r
    s = tunnel(ctld, servers, "frank")
    s.close()
    doc = assert_users_file_ok(ctld)
    frank = [u for u in doc["users"] if u["username"] == "frank"]
    assert len(frank) == 1 and frank[0]["password"].startswith("$y$"), frank
    assert NEW_PASSWORDS["frank"] not in ctld.users_path.read_text()
    assert before != ctld.users_path.read_text()
    # --proxy and --group land in the file and in user list --json.
    r = ctld.ctl("--json", "user", "add", "grace", "--password-stdin", "--proxy", "rec",
                 "--group", "g1", "--group", "g2", input=NEW_PASSWORDS["grace"])
    assert r.rc == 0 and r.json()["ok"] is True, r
    grace = [u for u in ctld.ctl_json("user", "list")[1]["users"] if u["username"] == "grace"][0]
    assert grace["external_proxy_id"] == "rec" and grace["groups"] == ["g1", "g2"], grace
    # Duplicate: refused, exit 1, the daemon's error on stderr.
    r = ctld.ctl("user", "add", "frank", "--password-stdin", input="other-pw-1234\n")
    assert r.rc == 1 and r.err.startswith("error: ") and "frank" in r.err, r
    assert_users_file_ok(ctld)


def test_user_add_password_rules(ctld):
    # Not a terminal and no --password-stdin: usage error, nothing sent.
    r = ctld.ctl("user", "add", "heidi")
    assert r.rc == 2 and "--password-stdin" in r.err, r
    r = ctld.ctl("user", "add", "heidi", "--password-stdin", input="\n")
    assert r.rc == 2 and "empty" in r.err, r
    r = ctld.ctl("user", "add", "heidi", "--password-stdin", input="")
    assert r.rc == 2, r
    r = ctld.ctl("user", "passwd", "bob")
    assert r.rc == 2, r
    names = [u["username"] for u in ctld.ctl_json("user", "list")[1]["users"]]
    assert "heidi" not in names
    # Only the first line is the password; a CRLF line ending is stripped too.
    r = ctld.ctl("user", "add", "heidi", "--password-stdin",
                 input=NEW_PASSWORDS["heidi"] + "\r\nignored\n")
    assert r.rc == 0, r


def test_user_passwd(ctld, servers):
    s = tunnel(ctld, servers, "bob")
    r = ctld.ctl("user", "passwd", "bob", "--password-stdin", input=NEW_PASSWORDS["bob2"] + "\n")
    assert r.rc == 0 and r.out.startswith("✓ Changed the password of bob"), r
    how, took = closed_within(s)
    assert how in ("eof", "reset"), f"bob's tunnel still open {took:.1f}s after passwd"
    s.close()
    assert login_refused(ctld, servers, "bob", PASSWORDS["bob"])
    tunnel(ctld, servers, "bob", NEW_PASSWORDS["bob2"]).close()
    assert_users_file_ok(ctld)
    r = ctld.ctl("user", "passwd", "nobody", "--password-stdin", input="whatever-pw\n")
    assert r.rc == 1 and "nobody" in r.err, r


def test_user_disable_closes_tunnel_and_blocks_login(ctld, servers):
    s = tunnel(ctld, servers, "carol")
    r = ctld.ctl("user", "disable", "carol")
    assert r.rc == 0 and r.out.startswith("✓ Disabled user carol"), r
    how, took = closed_within(s)
    s.close()
    assert how in ("eof", "reset"), f"carol's tunnel still open {took:.1f}s after user disable"
    assert login_refused(ctld, servers, "carol", PASSWORDS["carol"])
    assert [u for u in ctld.users_file()["users"] if u["username"] == "carol"][0]["enabled"] is False
    r, j = ctld.ctl_json("user", "enable", "carol")
    assert r.rc == 0 and j["ok"] is True and isinstance(j.get("generation"), int), r
    tunnel(ctld, servers, "carol").close()
    r = ctld.ctl("user", "enable", "carol")
    assert r.rc == 0 and r.out.strip() == "✓ Enabled user carol", r
    assert_users_file_ok(ctld)


def test_user_del(ctld, servers):
    s = tunnel(ctld, servers, "erin")
    r = ctld.ctl("user", "del", "erin")
    assert r.rc == 0 and r.out.startswith("✓ Deleted user erin"), r
    how, took = closed_within(s)
    s.close()
    assert how in ("eof", "reset"), f"erin's tunnel still open {took:.1f}s after user del"
    assert login_refused(ctld, servers, "erin", PASSWORDS["erin"])
    assert "erin" not in [u["username"] for u in assert_users_file_ok(ctld)["users"]]
    r = ctld.ctl("user", "del", "erin")
    assert r.rc == 1 and "erin" in r.err, r


SLOW_PW = "slow-pw-8Hq2"


def test_login_in_flight_when_the_user_goes_is_refused_not_dropped(fresh_proxy, recorder,
                                                                   servers):
    # A hash that takes crypt(3) a few seconds holds each login in verification while the
    # edit lands: the client must hear RFC 1929's failure status, not a bare close, and the
    # old password must not let it in.
    slow = subprocess.run(["mkpasswd", "-m", "sha-512", "-R", "10000000", "--stdin"],
                          input=SLOW_PW.encode(), capture_output=True, check=True)
    doc = ctl_users()
    doc["users"] += [{"username": n, "password": slow.stdout.decode().strip()}
                     for n in ("slowdel", "slowpw")]
    d = start_ctl_daemon(fresh_proxy, recorder.port, users=doc,
                         extra={"limits": {"handshake_timeout_ms": 60000}})
    for user, edit, stdin in (("slowdel", ("user", "del", "slowdel"), None),
                              ("slowpw", ("user", "passwd", "slowpw", "--password-stdin"),
                               NEW_PASSWORDS["bob2"] + "\n")):
        s = connect(d.p.socks_port)
        s.sendall(socks5_greeting())
        assert recv_exact(s, 2) == b"\x05\x02"
        s.sendall(socks5_auth(user, SLOW_PW))
        t0 = time.monotonic()
        r = d.ctl(*edit, input=stdin)
        assert r.rc == 0, r
        edited = time.monotonic() - t0
        s.settimeout(60)
        answer = s.recv(2)
        answered = time.monotonic() - t0
        s.close()
        assert answered > edited, f"{user}: crypt(3) was done before the edit; nothing was proved"
        assert answer == b"\x01\x01", f"{user}: {answer!r} (b'' is a bare close)"
    tunnel(d, servers, "slowpw", NEW_PASSWORDS["bob2"]).close()


def test_unknown_user_exit_1(ctld):
    for args in (["show-proxy", "nobody"], ["set-proxy", "nobody", "none"],
                 ["user", "disable", "nobody"], ["user", "enable", "nobody"],
                 ["user", "del", "nobody"], ["user", "passwd", "nobody", "--password-stdin"]):
        r = ctld.ctl(*args, input="some-pw-123\n" if "passwd" in args else None)
        assert r.rc == 1, r
        assert r.err.startswith("error: ") and "nobody" in r.err, r
        assert r.out == "", r
    r = ctld.ctl("--json", "show-proxy", "nobody")
    assert r.rc == 1, r
    j = r.json()
    assert j["ok"] is False and "nobody" in j["error"], j


def test_kick_unknown_user_exit_1(ctld):
    """Like every other per-user command, an unknown user is a refusal (a typo should not
    read as "closed 0 tunnels")."""
    r = ctld.ctl("kick", "nobody")
    assert r.rc == 1 and "nobody" in r.err, r


def test_concurrent_user_add(ctld, servers):
    results = {}

    def add(name):
        results[name] = ctld.ctl("user", "add", name, "--password-stdin",
                                 input=NEW_PASSWORDS[name] + "\n")
    ts = [threading.Thread(target=add, args=(n,)) for n in ("frank", "grace")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert all(r.rc == 0 for r in results.values()), results
    names = [u["username"] for u in assert_users_file_ok(ctld)["users"]]
    assert "frank" in names and "grace" in names, names
    names = [u["username"] for u in ctld.ctl_json("user", "list")[1]["users"]]
    assert "frank" in names and "grace" in names, names
    tunnel(ctld, servers, "frank").close()
    tunnel(ctld, servers, "grace").close()


# ---------------------------------------------------------------------------------------------
# Per-user routing (the seed's commands).
def test_show_proxy(ctld):
    r = ctld.ctl("show-proxy", "alice")
    assert r.rc == 0, r
    assert r.lines() == [
        "User: alice (alice@vless.local)",
        "External Proxy: rec (Recorder)",
        "Proxy Type: socks5",
        f"Proxy Address: 127.0.0.1:{ctld.proxies_file()['proxies'][0]['port']}",
        "Proxy Status: ✓ Enabled",
    ], r
    r, j = ctld.ctl_json("show-proxy", "alice")
    assert j["username"] == "alice" and j["email"] == "alice@vless.local"
    assert j["external_proxy_id"] == "rec"
    p = j["proxy"]
    assert p["id"] == "rec" and p["name"] == "Recorder" and p["type"] == "socks5"
    assert p["address"] == "127.0.0.1" and p["enabled"] is True and isinstance(p["up"], bool)
    assert "password" not in p and REC_PASSWORD not in r.out
    r = ctld.ctl("show-proxy", "bob")
    assert r.rc == 0, r
    assert r.lines()[0] == "User: bob" and r.lines()[1] == "External Proxy: (none)", r
    r, j = ctld.ctl_json("show-proxy", "bob")
    assert j["external_proxy_id"] is None and j["proxy"] is None, j


def test_set_proxy(ctld):
    r = ctld.ctl("set-proxy", "bob", "rec")
    assert r.rc == 0, r
    assert r.lines() == ["✓ Updated user bob: external_proxy_id = rec",
                         "✓ User bob will now route through rec"], r
    assert [u for u in ctld.users_file()["users"] if u["username"] == "bob"][0][
        "external_proxy_id"] == "rec"
    r = ctld.ctl("set-proxy", "bob", "none")
    assert r.rc == 0, r
    assert r.lines() == ["✓ Updated user bob: external_proxy_id = null",
                         "✓ User bob will now use direct routing"], r
    assert [u for u in ctld.users_file()["users"] if u["username"] == "bob"][0].get(
        "external_proxy_id") is None
    r, j = ctld.ctl_json("set-proxy", "bob", "rec")
    assert j == {**j, "ok": True, "username": "bob", "external_proxy_id": "rec"}, j
    assert isinstance(j["generation"], int)
    r, j = ctld.ctl_json("set-proxy", "bob", "none")
    assert j["external_proxy_id"] is None, j
    r = ctld.ctl("set-proxy", "bob", "no-such-proxy")
    assert r.rc == 1 and "no-such-proxy" in r.err, r
    assert_users_file_ok(ctld)


def test_list_proxy_assignments(ctld):
    r = ctld.ctl("list-proxy-assignments")
    assert r.rc == 0, r
    rows = table(r.out)
    assert rows[0] == ["USER", "PROXY ID", "PROXY NAME", "TYPE", "STATUS"], r
    by = {row[0]: row for row in rows[1:]}
    assert by["alice"] == ["alice", "rec", "Recorder", "socks5", "✓ Enabled"], r
    assert by["bob"] == ["bob", "(none)", "Direct routing", "-", "-"], r
    # Columns line up: every row's PROXY ID starts where the header's does.
    lines = r.lines()
    col = lines[0].index("PROXY ID")
    assert all(len(ln) > col and ln[col - 1] == " " and ln[col] != " " for ln in lines[1:]), r
    r, j = ctld.ctl_json("list-proxy-assignments")
    a = {x["username"]: x for x in j["assignments"]}
    assert a["alice"]["external_proxy_id"] == "rec" and a["bob"]["external_proxy_id"] is None
    assert a["alice"]["name"] == "Recorder" and a["alice"]["type"] == "socks5"
    assert a["alice"]["enabled"] is True


def test_set_proxy_none_moves_new_connections_keeps_open(ctld, servers, recorder):
    n0 = len(recorder.log)
    s1 = tunnel(ctld, servers, "alice")  # via rec
    assert len(recorder.log) == n0 + 1, recorder.log[n0:]
    r = ctld.ctl("set-proxy", "alice", "none")
    assert r.rc == 0, r
    s2 = tunnel(ctld, servers, "alice")  # direct now
    assert len(recorder.log) == n0 + 1, "alice's new connection still went through rec"
    time.sleep(1.5)  # a route change closes nothing, even after the disable/kick bound
    echo_roundtrip(s1, os.urandom(2048))  # the open tunnel keeps working
    echo_roundtrip(s2, os.urandom(2048))
    s1.close()
    s2.close()
    r = ctld.ctl("set-proxy", "alice", "rec")
    assert r.rc == 0, r
    tunnel(ctld, servers, "alice").close()
    assert len(recorder.log) == n0 + 2


# ---------------------------------------------------------------------------------------------
# External proxies.
def test_proxy_list(ctld):
    r = ctld.ctl("proxy", "list")
    assert r.rc == 0, r
    rows = table(r.out)
    assert rows[0] == ["ID", "NAME", "TYPE", "ADDRESS", "USERNAME", "GROUP", "STATUS", "ACTIVE"], r
    rec = [row for row in rows[1:] if row[0] == "rec"][0]
    assert rec[1:5] == ["Recorder", "socks5", f"127.0.0.1:{ctld.proxies_file()['proxies'][0]['port']}",
                        REC_USER], r
    assert REC_PASSWORD not in r.out
    r, j = ctld.ctl_json("proxy", "list")
    p = j["proxies"][0]
    assert set(p) >= {"id", "name", "type", "address", "port", "username", "enabled", "up",
                      "group", "active"}, p
    assert "password" not in p and REC_PASSWORD not in r.out


def test_proxy_add_test_del(ctld, recorder):
    pf = ctld.proxies_path
    port = recorder.port
    r = ctld.ctl("proxy", "add", "--id", "rec2", "--type", "socks5", "--address", "127.0.0.1",
                 "--port", str(port), "--username", REC_USER, "--password-stdin",
                 "--name", "Second", input=REC_PASSWORD + "\n")
    assert r.rc == 0, r
    assert r.lines() == ["✓ Proxy connectivity test passed", "✓ Proxy added with ID: rec2"], r
    doc = json.loads(pf.read_text())
    rec2 = [p for p in doc["proxies"] if p["id"] == "rec2"]
    assert rec2 and rec2[0]["port"] == port and rec2[0]["name"] == "Second", doc
    assert stat.S_IMODE(pf.stat().st_mode) == 0o600
    # A failing probe: refused, exit 1, nothing written.
    before = pf.read_bytes()
    dead = closed_port()
    r = ctld.ctl("proxy", "add", "--id", "dead", "--type", "socks5", "--address", "127.0.0.1",
                 "--port", str(dead))
    assert r.rc == 1 and r.err.startswith("error: "), r
    assert pf.read_bytes() == before
    # Wrong credentials fail the probe too.
    r = ctld.ctl("proxy", "add", "--id", "badauth", "--type", "socks5", "--address", "127.0.0.1",
                 "--port", str(port), "--username", REC_USER, "--password-stdin",
                 input="not-the-password\n")
    assert r.rc == 1, r
    assert pf.read_bytes() == before
    # --no-test writes it anyway.
    r = ctld.ctl("proxy", "add", "--id", "dead", "--type", "http", "--address", "127.0.0.1",
                 "--port", str(dead), "--group", "g1", "--no-test")
    assert r.rc == 0 and r.lines() == ["✓ Proxy added with ID: dead"], r
    assert "dead" in [p["id"] for p in json.loads(pf.read_text())["proxies"]]
    r, j = ctld.ctl_json("proxy", "list")
    dead_p = [p for p in j["proxies"] if p["id"] == "dead"][0]
    assert dead_p["group"] == "g1" and dead_p["type"] == "http", dead_p
    # proxy test
    r = ctld.ctl("proxy", "test", "rec2")
    assert r.rc == 0 and r.out.strip() == "✓ Proxy rec2 is up", r
    r, j = ctld.ctl_json("proxy", "test", "rec")
    assert j["ok"] is True and j["result"] == "up", j
    r = ctld.ctl("proxy", "test", "dead")
    assert r.rc == 1 and r.err.startswith("error: "), r
    r = ctld.ctl("proxy", "test", "nosuch")
    assert r.rc == 1 and "nosuch" in r.err, r
    # del: refused while a user is assigned (alice -> rec); fine for the others.
    r = ctld.ctl("proxy", "del", "rec")
    assert r.rc == 1 and "alice" in r.err, r
    r = ctld.ctl("proxy", "del", "dead")
    assert r.rc == 0 and r.out.strip() == "✓ Deleted proxy dead", r
    r, j = ctld.ctl_json("proxy", "del", "rec2")
    assert j["ok"] is True and isinstance(j["generation"], int), j
    assert [p["id"] for p in json.loads(pf.read_text())["proxies"]] == ["rec"]
    assert stat.S_IMODE(pf.stat().st_mode) == 0o600
    r = ctld.ctl("proxy", "del", "rec2")
    assert r.rc == 1, r


def test_proxy_disable_enable(ctld, servers, recorder):
    r = ctld.ctl("proxy", "disable", "rec")
    assert r.rc == 0 and r.out.strip() == "✓ Disabled proxy rec", r
    assert json.loads(ctld.proxies_path.read_text())["proxies"][0]["enabled"] is False
    assert ctld.ctl("show-proxy", "alice").lines()[-1] == "Proxy Status: ✗ Disabled"
    rows = {row[0]: row for row in table(ctld.ctl("list-proxy-assignments").out)}
    assert rows["alice"][-1] == "✗ Disabled"
    # Fail closed: alice's route is unavailable (routing.on_failure defaults to reject).
    n0 = len(recorder.log)
    res = socks5_open(ctld.p.socks_port, "127.0.0.1", servers.echo.port, user="alice",
                      pw=PASSWORDS["alice"])
    res.sock.close()
    assert res.rep != 0 and len(recorder.log) == n0, res
    r = ctld.ctl("proxy", "enable", "rec")
    assert r.rc == 0 and r.out.strip() == "✓ Enabled proxy rec", r
    assert ctld.ctl("show-proxy", "alice").lines()[-1] == "Proxy Status: ✓ Enabled"
    tunnel(ctld, servers, "alice").close()
    assert len(recorder.log) == n0 + 1
    r = ctld.ctl("proxy", "enable", "nosuch")
    assert r.rc == 1, r


# ---------------------------------------------------------------------------------------------
# Live tunnels.
def test_connections_and_kick(ctld, servers):
    a1 = tunnel(ctld, servers, "alice")
    a2 = tunnel(ctld, servers, "alice")
    b1 = tunnel(ctld, servers, "bob")
    try:
        r = ctld.ctl("connections")
        assert r.rc == 0, r
        rows = table(r.out)
        assert rows[0] == ["USER", "CLIENT", "TARGET", "ROUTE", "UP", "DOWN", "AGE"], r
        users = sorted(row[0] for row in rows[1:])
        assert users == ["alice", "alice", "bob"], r
        target = f"127.0.0.1:{servers.echo.port}"
        assert all(row[2] == target for row in rows[1:]), r
        assert all(re.fullmatch(r"\d+(\.\d)? (B|KiB|MiB|GiB)", row[4]) for row in rows[1:]), r
        r, j = ctld.ctl_json("connections", "--user", "alice")
        cs = j["connections"]
        assert len(cs) == 2 and all(c["user"] == "alice" for c in cs), j
        for c in cs:
            assert set(c) >= {"user", "client", "target", "route", "bytes_up", "bytes_down",
                              "age_s"}, c
            assert c["target"] == target and c["bytes_up"] >= 512 and c["bytes_down"] >= 512, c
        assert {c["route"] for c in cs} != {"direct"}, cs  # alice goes through rec
        r = ctld.ctl("connections", "--user", "bob")
        assert [row[0] for row in table(r.out)[1:]] == ["bob"], r
        r = ctld.ctl("kick", "alice")
        assert r.rc == 0 and r.out.strip() == "✓ Closed 2 tunnels of alice", r
        for s in (a1, a2):
            how, took = closed_within(s)
            assert how in ("eof", "reset"), f"alice's tunnel open {took:.1f}s after kick"
        echo_roundtrip(b1, os.urandom(1024))  # bob's is untouched
        r, j = ctld.ctl_json("kick", "alice")
        assert j["ok"] is True and j["closed"] == 0, j
        tunnel(ctld, servers, "alice").close()  # kick is not a ban
        r = ctld.ctl("connections", "--user", "nobody-here")
        assert r.rc == 0 and len(table(r.out)) == 1, r
    finally:
        for s in (a1, a2, b1):
            s.close()


# ---------------------------------------------------------------------------------------------
# Reload.
def test_reload(ctld):
    g0 = ctld.ctl_json("status")[1]["generation"]
    r = ctld.ctl("reload")
    assert r.rc == 0 and r.out.startswith("✓ Reloaded"), r
    r, j = ctld.ctl_json("reload")
    assert j["ok"] is True and j["generation"] > g0, j
    assert ctld.ctl_json("status")[1]["generation"] == j["generation"]


def test_reload_invalid_users_file(ctld, servers):
    s = tunnel(ctld, servers, "bob")
    g0 = ctld.ctl_json("status")[1]["generation"]
    good = ctld.users_path.read_text()
    ctld.users_path.write_text(good[: len(good) // 2])  # truncated: invalid JSON
    r = ctld.ctl("reload")
    assert r.rc == 1, r
    assert r.err.startswith("error: ") and "users.json" in r.err, r
    r = ctld.ctl("--json", "reload")
    assert r.rc == 1, r
    j = r.json()
    assert j["ok"] is False and isinstance(j.get("errors"), list) and j["errors"], j
    assert any("users.json" in e for e in j["errors"]), j
    assert ctld.ctl_json("status")[1]["generation"] == g0
    # The running snapshot is untouched: old users still log in, the open tunnel still works.
    tunnel(ctld, servers, "carol").close()
    echo_roundtrip(s, os.urandom(1024))
    s.close()
    ctld.users_path.write_text(good)
    r, j = ctld.ctl_json("reload")
    assert r.rc == 0 and j["generation"] > g0, r


# ---------------------------------------------------------------------------------------------
# Back-to-back requests: every one gets its answer (each uringproxyctl run is a new connection).
def test_back_to_back_requests(ctld):
    import socket as so
    failures = []
    for i in range(1000):
        c = so.socket(so.AF_UNIX)
        c.settimeout(10)
        try:
            c.connect(str(ctld.socket))
            c.sendall(b'{"cmd":"status"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                d = c.recv(4096)
                if not d:
                    break
                buf += d
            if not buf.endswith(b"\n") or not json.loads(buf)["ok"]:
                failures.append((i, "no answer", buf[:100]))
        except OSError as e:
            failures.append((i, repr(e)))
        finally:
            c.close()
    assert not failures, f"{len(failures)} of 1000 control connections got no answer: {failures[:5]}"
    for _ in range(50):
        r = ctld.ctl("--json", "status")
        assert r.rc == 0, r


# ---------------------------------------------------------------------------------------------
# Issue 14 item 20: operators keep users.json under /etc and link it in; an edit writes through
# the link instead of replacing it with a plain file.
def test_edit_writes_through_a_symlinked_users_file(fresh_proxy, servers):
    p = fresh_proxy(start=False)
    p.workdir.mkdir(parents=True, exist_ok=True)
    real_dir = p.workdir / "etc-uringproxy"
    real_dir.mkdir()
    real = real_dir / "users.json"
    real.write_text(json.dumps(p.users, indent=2))
    os.chmod(real, 0o600)
    link = p.workdir / "users.json"
    os.symlink("etc-uringproxy/users.json", link)
    p.start()  # writes users.json through the link: the target holds it
    d = CtlDaemon(p, p.workdir / "run" / "control.sock")
    wait_control(d)

    r = d.ctl("user", "add", "frank", "--password-stdin", input=NEW_PASSWORDS["frank"] + "\n")
    assert r.rc == 0, r
    assert link.is_symlink(), "the edit replaced the symbolic link with a plain file"
    assert os.readlink(link) == "etc-uringproxy/users.json"
    names = [u["username"] for u in json.loads(real.read_text())["users"]]
    assert "frank" in names, f"the link's target did not get the edit: {names}"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600, oct(real.stat().st_mode)
    leftovers = [f.name for f in list(real_dir.iterdir()) + list(p.workdir.iterdir())
                 if ".tmp." in f.name]
    assert not leftovers, leftovers
    tunnel(d, servers, "frank").close()
    # A reload reads the file through the link and keeps frank.
    r = d.ctl("reload")
    assert r.rc == 0, r
    tunnel(d, servers, "frank").close()
    # A second edit goes through the link again.
    r = d.ctl("user", "disable", "frank")
    assert r.rc == 0, r
    assert link.is_symlink()
    frank = [u for u in json.loads(real.read_text())["users"] if u["username"] == "frank"][0]
    assert frank["enabled"] is False, frank
