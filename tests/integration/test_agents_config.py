"""Reverse agents' configuration (issue 12) as `--check` reports it: the agents_file is checked in
full (errors name the file, the agent and the field; a file group or others can read is refused),
and an `agent` listener needs TLS."""
import json
import subprocess

import pytest

from harness import base_config, merge, proxy_binary, users_doc

pytestmark = pytest.mark.uringproxy_only

# openssl passwd -6 -salt agentsalt home-secret
SECRET_HASH = ("$6$agentsalt$DdU4kVkoRhwL7/XGpjA9vOlKzNRl.VhgFpX6A/vZ1sPbfj0"
               "NF3xlwk0E08AkigP/mTjWmP7i.inF7fkTRmujs/")


def run_check(cfg_path):
    r = subprocess.run([proxy_binary(), "--check", "--config", str(cfg_path)],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def agent(id_, **over):
    return dict({"id": id_, "secret": SECRET_HASH, "group": "residential", "enabled": True},
                **over)


def make_files(tmp_path, agents, mode=0o600, extra=None):
    cfg = merge(base_config(11080, 18080, 15353),
                dict({"agents_file": "agents.json",
                      "groups": {"residential": {"policy": "round_robin"}}}, **(extra or {})))
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "users.json").write_text(json.dumps(users_doc()))
    f = tmp_path / "agents.json"
    f.write_text(json.dumps({"agents": agents}))
    f.chmod(mode)
    return tmp_path / "config.json"


def test_valid_agents_file_passes_check(tmp_path):
    rc, out = run_check(make_files(tmp_path, [agent("home-1"), agent("home-2", enabled=False)]))
    assert rc == 0, out
    # The group has only agents: still a group, no warning about it.
    assert "residential" not in out, out
    assert SECRET_HASH not in out


CASES = {
    "bad-secret": ([agent("home-1", secret="plain-secret")],
                   'agents.json: agent "home-1" (agents[0]).secret: not a crypt(3) hash'),
    "duplicate-id": ([agent("home-1"), agent("home-1")],
                     'agents.json: agent "home-1" (agents[1]).id: is already agent "home-1" '
                     '(agents[0]); agent ids must be unique'),
    "bad-id": ([agent("home 1")], 'agents.json: agents[0].id: "home 1" is not an agent id'),
    "bad-group": ([agent("home-1", group="a.b")],
                  'agents.json: agent "home-1" (agents[0]).group: "a.b" is not a group name'),
    "missing-group": ([{"id": "home-1", "secret": SECRET_HASH}],
                      'agents.json: agent "home-1" (agents[0]).group'),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_names_file_agent_and_field(tmp_path, case):
    agents, expected = CASES[case]
    rc, out = run_check(make_files(tmp_path, agents))
    assert rc == 1, out
    assert expected in out, out
    assert "is valid" not in out, out
    assert "plain-secret" not in out


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_check_refuses_readable_agents_file(tmp_path, mode):
    rc, out = run_check(make_files(tmp_path, [agent("home-1")], mode=mode))
    assert rc == 1, out
    assert f"group or others may access it (mode {mode:04o})" in out, out
    assert "chmod 600" in out


def test_agent_listener_needs_tls(tmp_path):
    plain = {"name": "agents", "protocol": "agent", "listen": "127.0.0.1:17443"}
    cfg = base_config(11080, 18080, 15353)
    cfg["listeners"].append(plain)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "users.json").write_text(json.dumps(users_doc()))
    rc, out = run_check(tmp_path / "config.json")
    assert rc == 1, out
    assert 'listeners[2].protocol: "agent" needs TLS' in out, out

    cert, key = tmp_path / "gw.pem", tmp_path / "gw.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "3", "-subj", "/CN=gw.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    cfg["listeners"][2]["tls"] = {"cert": str(cert), "key": str(key)}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, out = run_check(tmp_path / "config.json")
    assert rc == 0, out
    assert "needs TLS" not in out
