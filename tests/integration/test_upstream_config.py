"""external_proxy.json problems (issue 3 "Bad input and faults"): `--check` exits 1 and names the
problem; a reload with a bad proxies file is refused and the running routes keep working; a good
reload changes routes for new connections."""
import json
import os
import signal
import subprocess

import sys

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U
from harness import base_config, merge, proxy_binary
from upstream_conftest import pw, socks, up_config, user

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only


def run_check(cfg_path):
    r = subprocess.run([proxy_binary(), "--check", "--config", str(cfg_path)],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def good_proxies():
    return [
        {"id": "p-socks", "type": "socks5", "address": "127.0.0.1", "port": 1081,
         "username": U.SOCKS_USER, "password": U.SOCKS_PASSWORD},
        {"id": "p-https", "type": "https", "address": "127.0.0.1", "port": 1443,
         "username": U.HTTP_USER, "password": U.HTTP_PASSWORD,
         "tls": {"server_name": "upstream.test", "verify": True}, "group": "eu"},
    ]


def make_files(tmp_path, proxies=None, users=None, mode=0o600):
    cfg = merge(base_config(11080, 18080, 15353), {"proxies_file": "external_proxy.json"})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "users.json").write_text(json.dumps(
        users or {"users": [user("alice", "p-socks"), user("charlie", None)]}))
    U.write_proxies_file(tmp_path, proxies if proxies is not None else good_proxies(), mode)
    return tmp_path / "config.json"


def test_check_accepts_good_proxies_file(tmp_path):
    rc, out = run_check(make_files(tmp_path))
    assert rc == 0, out
    for s in U.upstream_secrets():
        assert s not in out, "an upstream password was printed"


CASES = {
    "unknown-type": (lambda: [dict(good_proxies()[0], type="socks4")], None,
                     ["external_proxy.json", "type", "socks4"]),
    "duplicate-id": (lambda: good_proxies() + [dict(good_proxies()[0], port=1082)], None,
                     ["external_proxy.json", "p-socks"]),
    "unknown-external-proxy-id": (
        good_proxies, lambda: {"users": [user("alice", "p-nowhere")]},
        ["external_proxy_id", "p-nowhere"]),
    "unknown-on-failure-id": (lambda: [dict(good_proxies()[0], on_failure="p-gone")], None,
                              ["on_failure", "p-gone"]),
    "on-failure-loop": (lambda: [dict(good_proxies()[0], on_failure="p-https"),
                                 dict(good_proxies()[1], on_failure="p-socks")], None,
                        ["on_failure"]),
    "tls-on-plain-type": (lambda: [dict(good_proxies()[0], tls={"verify": True})], None,
                          ["tls"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_names_the_problem(tmp_path, case):
    proxies, users, words = CASES[case]
    rc, out = run_check(make_files(tmp_path, proxies(), users() if users else None))
    assert rc == 1, f"exit {rc}, want 1:\n{out}"
    for w in words:
        assert w in out, f"the errors do not name {w!r}:\n{out}"
    for s in U.upstream_secrets():
        assert s not in out, "an upstream password was printed"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_check_refuses_readable_proxies_file(tmp_path, mode):
    rc, out = run_check(make_files(tmp_path, mode=mode))
    assert rc == 1, f"mode {mode:o}: exit {rc}, want 1:\n{out}"
    assert "external_proxy.json" in out, out
    low = out.lower()
    assert any(w in low for w in ("mode", "readable", "permission", "chmod", "0600", "600")), \
        f"the error does not say what is wrong with the file:\n{out}"


# ---------------------------------------------------------------------------------------------
def test_reload_refuses_bad_proxies_file_and_applies_good_one(up_factory, ustack):
    proxies = [socks("p1", ustack.dante_a.port), socks("p2", ustack.dante_b.port, creds=False)]
    users = {"users": [user("dan", "p1"), user("charlie", None)]}
    p = up_factory("up-reload", up_config(ustack), users, proxies)
    target = ustack.target
    assert U.socks_try(p, "dan", pw("dan"), "127.0.0.1", target.port) == ("ok", U.DANTE_A_EXIT)

    # A duplicate id: refused, the running snapshot stays.
    start = p.mark()
    U.write_proxies_file(p.workdir, proxies + [dict(proxies[0], port=ustack.dante_b.port)])
    p.signal(signal.SIGHUP)
    line = p.err.wait_for(lambda ln: "reloaded:" in ln or "reload refused" in ln, 20, start)
    assert line is not None and "refused" in line.lower(), \
        "no 'reload refused' line:\n" + "\n".join(p.stderr_lines(start))
    assert "p1" in p.output_text(start), "the refusal does not name the duplicate id"
    assert U.socks_try(p, "dan", pw("dan"), "127.0.0.1", target.port) == ("ok", U.DANTE_A_EXIT)

    # Readable by others: refused too.
    start = p.mark()
    U.write_proxies_file(p.workdir, [socks("p1", ustack.dante_b.port, creds=False)], mode=0o644)
    p.signal(signal.SIGHUP)
    line = p.err.wait_for(lambda ln: "reloaded:" in ln or "reload refused" in ln, 20, start)
    assert line is not None and "refused" in line.lower(), "\n".join(p.stderr_lines(start))
    assert U.socks_try(p, "dan", pw("dan"), "127.0.0.1", target.port) == ("ok", U.DANTE_A_EXIT)

    # A good file moving p1 to dante B: new connections take the new route; a tunnel opened
    # before keeps the route it started with.
    from clients import echo_roundtrip, socks5_open
    r = socks5_open(p.socks_port, "127.0.0.1", ustack.echo.port, user="dan", pw=pw("dan"))
    assert r.rep == 0, r
    echo_roundtrip(r.sock, b"before reload" * 100)
    start = p.mark()
    U.write_proxies_file(p.workdir, [socks("p1", ustack.dante_b.port, creds=False)])
    os.chmod(p.workdir / "external_proxy.json", 0o600)
    p.signal(signal.SIGHUP)
    line = p.err.wait_for(lambda ln: "reloaded:" in ln or "reload refused" in ln, 20, start)
    assert line is not None and "refused" not in line.lower(), "\n".join(p.stderr_lines(start))
    assert U.socks_try(p, "dan", pw("dan"), "127.0.0.1", target.port) == ("ok", U.DANTE_B_EXIT)
    echo_roundtrip(r.sock, b"after reload" * 1000)
    r.sock.close()
