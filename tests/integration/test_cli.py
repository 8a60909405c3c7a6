"""9. Command line: --check on good and bad configs, --version, --help."""
import json
import os
import subprocess

import pytest

from harness import base_config, merge, proxy_binary, users_doc

pytestmark = pytest.mark.uringproxy_only


def run(*args, cwd=None):
    return subprocess.run([proxy_binary(), *args], capture_output=True, timeout=30, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def text(r):
    return (r.stdout + r.stderr).decode(errors="replace")


def write_config(tmp_path, name, overrides=None, raw=None, users=None):
    (tmp_path / "users.json").write_text(json.dumps(users if users is not None else users_doc()))
    p = tmp_path / name
    if raw is not None:
        p.write_text(raw)
    else:
        p.write_text(json.dumps(merge(base_config(11080, 18080, 15353), overrides or {})))
    return p


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0, text(r)
    assert "0.1" in text(r) or "uringproxy" in text(r).lower(), text(r)
    r = run("--help")
    assert r.returncode == 0, text(r)
    t = text(r)
    for flag in ("--config", "--check"):
        assert flag in t, f"--help does not mention {flag}:\n{t}"


def test_check_good_config(tmp_path):
    p = write_config(tmp_path, "good.json")
    r = run("--check", "--config", str(p))
    assert r.returncode == 0, text(r)


def test_check_good_config_with_comments(tmp_path):
    """docs/configuration.md: JSON with comments allowed."""
    body = json.dumps(base_config(11080, 18080, 15353), indent=2)
    body = "// leading comment\n" + body.replace('"workers": 2,', '"workers": 2, /* inline */')
    p = write_config(tmp_path, "commented.json", raw=body)
    r = run("--check", "--config", str(p))
    assert r.returncode == 0, text(r)


BAD = {
    "wrong-type": ({"workers": "two"}, ["workers"]),
    "unknown-field": ({"bogus_field": 1}, ["bogus_field"]),
    "bad-listen": ({"listeners": [{"name": "socks", "protocol": "socks5",
                                   "listen": "127.0.0.1:notaport"}]}, ["listen"]),
    "bad-protocol": ({"listeners": [{"name": "x", "protocol": "gopher",
                                     "listen": "127.0.0.1:1"}]}, ["protocol"]),
    "bad-auth": ({"auth": "maybe"}, ["auth"]),
    "unknown-nested": ({"limits": {"handshake_timeout_ms": 1000, "typo_ms": 5}}, ["typo_ms"]),
    "two-errors": ({"workers": "two", "bogus_field": 1}, ["workers", "bogus_field"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_check_bad_config(tmp_path, case):
    over, fields = BAD[case]
    p = write_config(tmp_path, "bad.json", over)
    r = run("--check", "--config", str(p))
    t = text(r)
    assert r.returncode == 1, f"exit {r.returncode}, want 1:\n{t}"
    assert "bad.json" in t, f"errors do not name the file:\n{t}"
    for f in fields:
        assert f in t, f"errors do not name the field {f!r}:\n{t}"


def test_check_invalid_json(tmp_path):
    p = write_config(tmp_path, "bad.json", raw='{"workers": 2,, }')
    r = run("--check", "--config", str(p))
    assert r.returncode == 1, text(r)
    assert "bad.json" in text(r), text(r)


def test_check_plain_password_refused(tmp_path):
    users = {"users": [{"username": "alice", "password": "plaintext-pw-Zz9"}]}
    p = write_config(tmp_path, "good.json", users=users)
    r = run("--check", "--config", str(p))
    t = text(r)
    assert r.returncode == 1, t
    assert "users.json" in t and "password" in t, t
    assert "plaintext-pw-Zz9" not in t, "the plain password was echoed back"


def test_check_bad_username(tmp_path):
    users = users_doc()
    users = {"users": users["users"] + [{"username": "eve.us", "password":
                                         users["users"][0]["password"]}]}
    p = write_config(tmp_path, "good.json", users=users)
    r = run("--check", "--config", str(p))
    assert r.returncode == 1, text(r)
    assert "users.json" in text(r) and "username" in text(r), text(r)


def test_check_missing_users_file(tmp_path):
    p = write_config(tmp_path, "good.json", {"users_file": "nope.json"})
    r = run("--check", "--config", str(p))
    assert r.returncode == 1, text(r)
    assert "nope.json" in text(r), text(r)


def test_check_full_design_example(tmp_path):
    """The whole documented example (with the files it names) loads: fields whose feature has
    not landed are accepted with a warning, not rejected."""
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(certs / "server.key"),
                    "-out", str(certs / "server.pem")], check=True, capture_output=True)
    (certs / "ca.pem").write_bytes((certs / "server.pem").read_bytes())
    u = users_doc()["users"]
    (tmp_path / "users.json").write_text(json.dumps({"users": [
        dict(u[0], uuid="a1b2c3d4-e5f6-7890-1234-567890abcdef", email="alice@vless.local",
             external_proxy_id="proxy-us-east", groups=["us-east", "production"], enabled=True,
             max_connections=100, bandwidth_bps=0, allow=[], deny=[]),
        {"username": "charlie", "password": u[1]["password"], "external_proxy_id": None},
    ]}))
    ep = tmp_path / "external_proxy.json"
    ep.write_text(json.dumps({"proxies": [
        {"id": "proxy-us-east", "name": "US East Proxy", "type": "socks5s",
         "address": "proxy-us.example.com", "port": 1080, "username": "proxyuser",
         "password": "upstream-secret", "enabled": True, "group": "us-east",
         "tls": {"server_name": "proxy-us.example.com", "verify": True, "ca_file": "certs/ca.pem"},
         "on_failure": "reject"}]}))
    os.chmod(ep, 0o600)
    cfg = {
        "workers": 0,
        "listeners": [
            {"name": "socks", "protocol": "socks5", "listen": "127.0.0.1:1080"},
            {"name": "http", "protocol": "http", "listen": "127.0.0.1:8080"},
            {"name": "https", "protocol": "http", "listen": "127.0.0.1:8443",
             "tls": {"cert": "certs/server.pem", "key": "certs/server.key"}},
            {"name": "vless", "protocol": "vless", "listen": "127.0.0.1:8444",
             "tls": {"cert": "certs/server.pem", "key": "certs/server.key"}},
        ],
        "auth": "required",
        "users_file": "users.json",
        "proxies_file": "external_proxy.json",
        "routing": {"on_failure": "reject", "group_fallback": "default"},
        "upstream": {"connect_timeout_ms": 5000, "attempts": 3, "backoff_ms": 1000},
        "groups": {"us-east": {"policy": "round_robin", "on_failure": "reject"}},
        "health_check": {"interval_ms": 10000, "timeout_ms": 3000},
        "dns": {"servers": [], "cache_max_ttl_s": 300},
        "acl": {"deny_private": True, "allow": [], "deny": [], "deny_ports": []},
        "limits": {"handshake_timeout_ms": 10000, "idle_timeout_ms": 300000,
                   "max_connections_per_user": 0, "bandwidth_bps_per_user": 0},
        "control": {"socket": "run/control.sock"},
        "metrics": {"listen": "127.0.0.1:9100"},
        "access_log": "stderr",
        "shutdown_grace_ms": 10000,
    }
    p = tmp_path / "uringproxy.json"
    p.write_text(json.dumps(cfg, indent=2))
    r = run("--check", "--config", str(p))
    assert r.returncode == 0, text(r)
    assert "upstream-secret" not in text(r)
    # The upstream secrets file readable by others is refused.
    os.chmod(ep, 0o644)
    r = run("--check", "--config", str(p))
    assert r.returncode == 1, text(r)
    assert "external_proxy.json" in text(r), text(r)


def test_workers_flag(fresh_proxy, servers):
    """--workers N overrides "workers"."""
    from clients import assert_served
    p = fresh_proxy(start=False)
    p.extra_args = ["--workers", "1"]
    p.start()
    assert_served(p, servers, "with --workers 1")
    threads = len(os.listdir(f"/proc/{p.pid}/task"))
    p2 = fresh_proxy({"workers": 2})
    assert threads < len(os.listdir(f"/proc/{p2.pid}/task")), \
        "--workers 1 started as many threads as workers: 2"


def _named_errors_case(tmp_path):
    """users.json where dave (users[3]) has a plain password and bob (users[1]) a bad limit, and
    an external_proxy.json where us1 (proxies[2]) has a bad port."""
    doc = users_doc()
    assert doc["users"][3]["username"] == "dave" and doc["users"][1]["username"] == "bob"
    doc["users"][3]["password"] = "dave-plain-Wz7q"
    doc["users"][1]["max_connections"] = "many"
    px = tmp_path / "external_proxy.json"
    px.write_text(json.dumps({"proxies": [
        {"id": "eu1", "type": "socks5", "address": "127.0.0.1", "port": 1080},
        {"id": "eu2", "type": "http", "address": "127.0.0.1", "port": 3128},
        {"id": "us1", "type": "socks5", "address": "127.0.0.1", "port": 70000}]}))
    os.chmod(px, 0o600)
    return write_config(tmp_path, "named.json", {"proxies_file": "external_proxy.json"},
                        users=doc)


NAMED = ['users.json: user "dave" (users[3]).password: not a crypt(3) hash (use openssl '
         'passwd -6 or uringproxyctl user add)',
         'users.json: user "bob" (users[1]).max_connections: must be an integer',
         'external_proxy.json: upstream "us1" (proxies[2]).port: 70000 is out of range']


def test_check_and_start_name_the_user_and_the_upstream(tmp_path):
    """Issue 14 item 2: among thousands of users the operator searches by name, not index."""
    p = _named_errors_case(tmp_path)
    for args in (["--check", "--config", str(p)], ["--config", str(p)]):
        r = run(*args, cwd=tmp_path)
        t = text(r)
        assert r.returncode == 1, f"{args}: exit {r.returncode}, want 1:\n{t}"
        for want in NAMED:
            assert want in t, f"{args}: no line {want!r} in:\n{t}"
        assert "dave-plain-Wz7q" not in t, t
