"""bench/compare's wrk and hey cases (issue 15): the parsers of hey's summary and of the peers'
forward addresses, and one short run of both tools through uringproxy's HTTP forward path and
straight to the origin, which must answer every request and write the section with numbers."""
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess

import pytest

from harness import REPO, proxy_binary

pytestmark = pytest.mark.uringproxy_only

COMPARE = os.path.join(REPO, "bench", "compare")


def compare_module():
    loader = importlib.machinery.SourceFileLoader("bench_compare", COMPARE)
    spec = importlib.util.spec_from_loader("bench_compare", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


HEY_OUT = """
Summary:
  Total:	2.0050 secs
  Requests/sec:	1000.0000

Latency distribution:
  10% in 0.0017 secs
  50% in 0.0029 secs
  90% in 0.0061 secs
  99% in 0.0149 secs

Status code distribution:
  [200]	2000 responses
  [407]	5 responses

Error distribution:
  [3]	Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused
"""


def test_parse_hey_counts_2xx_and_errors():
    r = compare_module().parse_hey(HEY_OUT)
    assert r["requests"] == 2000
    assert r["errors"] == 8  # 5 answers that are not 2xx, 3 transport errors
    assert r["req_s"] == pytest.approx(2000 / 2.005)
    assert (r["p50_us"], r["p90_us"], r["p99_us"]) == pytest.approx((2900, 6100, 14900))


def test_ext_route_from_peer_arguments():
    m = compare_module()
    p = m.Peer("uringproxy-http")
    p.args = ["--proxy", "http://bench:benchpass@127.0.0.1:5555"]
    assert m.ext_route(p, 9000) == ("127.0.0.1:5555", "http://127.0.0.1:9000/", "bench:benchpass")
    p.args = ["--direct", "--target", "127.0.0.1:7777"]  # haproxy: origin-form through a relay
    assert m.ext_route(p, 9000) == ("127.0.0.1:7777", None, None)
    p.args = ["--direct"]
    assert m.ext_route(p, 9000) == ("127.0.0.1:9000", None, None)


def run_compare(tmp_path, uringload, peers, cases):
    """bench/compare with one 1 s round of `cases` against `peers`: its result and its table."""
    out = tmp_path / "out.md"
    p = subprocess.run([COMPARE, "--peers", peers, "--cases", cases,
                        "--duration", "1", "--repeats", "1", "--no-install",
                        "--uringproxy", proxy_binary(), "--uringload", uringload,
                        "--output", str(out)], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p, out.read_text()


def test_wrk_and_hey_through_uringproxy_http(tmp_path):
    uringload = os.path.join(os.path.dirname(proxy_binary()), "tools", "uringload")
    if not os.access(uringload, os.X_OK):
        pytest.skip(f"{uringload} not built")
    for tool in ("wrk", "hey"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (apt-get install {tool})")
    _, text = run_compare(tmp_path, uringload, "uringproxy-http,direct", "wrk,hey")
    assert "### HTTP forward with wrk and hey" in text
    for tool in ("wrk", "hey"):
        section = text.split(f"\n{tool}:\n", 1)[1].split("\n\n", 1)[0]
        rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
                for ln in section.splitlines() if ln.startswith("| ")}
        for peer in ("uringproxy-http", "direct"):
            assert peer in rows, (tool, section)
            req_s, errors = rows[peer][0], rows[peer][9]
            assert re.fullmatch(r"\d+", req_s) and int(req_s) > 0, (tool, peer, rows[peer])
            assert errors == "0", (tool, peer, rows[peer])
        # uringproxy's CPU per request was read; direct has no proxy
        assert re.fullmatch(r"\d+\.\d+", rows["uringproxy-http"][4]), rows["uringproxy-http"]
        assert rows["direct"][4] == "—"


def test_ssh_reverse_peer_files_and_cases(tmp_path):
    """ssh-reverse (issue 12): the agent peers' cases, a loopback-only throwaway sshd of its own
    (host key, pid file, authorized keys in the run's dir) and `ssh -N -R` with no destination
    (OpenSSH's reverse dynamic forward: the ssh client is the SOCKS server)."""
    m = compare_module()
    assert "ssh-reverse" in m.AGENT_PEERS and "ssh-reverse" in m.ALL_PEERS
    assert m.Peer("ssh-reverse").cases == m.AGENT_CASES == ["bulk1", "cps", "lat1", "lat16"]
    d = str(tmp_path)
    conf, sshd, ssh = m.ssh_reverse_files(d, 2222, 1080)
    lines = dict(ln.split(" ", 1) for ln in conf.splitlines() if ln)
    assert lines["Port"] == "2222" and lines["ListenAddress"] == "127.0.0.1"
    for key, name in (("HostKey", "host_key"), ("PidFile", "sshd.pid"),
                      ("AuthorizedKeysFile", "authorized_keys")):
        assert lines[key] == os.path.join(d, name)
    assert lines["StrictModes"] == "no" and lines["UsePAM"] == "no"
    assert lines["PasswordAuthentication"] == "no" and lines["AllowTcpForwarding"] == "yes"
    assert sshd == ["/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(d, "sshd_config")]
    assert ssh[:2] == ["ssh", "-N"]
    assert ssh[ssh.index("-R") + 1] == "127.0.0.1:1080"  # no destination: a dynamic forward
    assert ssh[ssh.index("-p") + 1] == "2222" and ssh[-1] == "root@127.0.0.1"
    assert ssh[ssh.index("-i") + 1] == os.path.join(d, "client_key")
    opts = {ssh[i + 1] for i, a in enumerate(ssh) if a == "-o"}
    assert {"StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes",
            "ExitOnForwardFailure=yes"} <= opts
    # installed on demand with the rest of the bench packages
    assert ("sshd", "openssh-server") in m.NEEDS["ssh"]


def test_ssh_reverse_runs(tmp_path):
    """One short cps and lat1 through ssh-reverse: its sshd and ssh start, uringload gets
    through the forward, and everything it started is gone afterwards."""
    uringload = os.path.join(os.path.dirname(proxy_binary()), "tools", "uringload")
    if not os.access(uringload, os.X_OK):
        pytest.skip(f"{uringload} not built")
    if not os.access("/usr/sbin/sshd", os.X_OK) or not shutil.which("ssh"):
        pytest.skip("openssh-server / openssh-client not installed")
    if os.geteuid() != 0:
        pytest.skip("the peer logs in to its own sshd as root")
    def ssh_pids():
        r = subprocess.run(["pgrep", "-f", "uringproxy-compare-.*/ssh-reverse/"],
                           capture_output=True, text=True)
        return set(r.stdout.split())

    before = ssh_pids()
    p, text = run_compare(tmp_path, uringload, "ssh-reverse", "cps,lat1")
    assert "ssh-reverse: up" in p.stdout, p.stdout[-2000:]
    table = text.split("## Absolute figures", 1)[1]
    row = next(ln for ln in table.splitlines() if ln.startswith("| ssh-reverse |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    conn_s, cpu_us, errors = cells[5], cells[6], cells[-1]
    assert re.fullmatch(r"\d+", conn_s) and int(conn_s) > 0, row
    assert re.fullmatch(r"\d+\.\d", cpu_us), row  # sshd + ssh's CPU was read
    assert errors == "0", row
    assert ssh_pids() <= before  # its sshd (and the session's child) and ssh were stopped
