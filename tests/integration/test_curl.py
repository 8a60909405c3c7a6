"""1. curl through every inbound mode: bodies byte for byte, big transfers by sha256, every
password hash scheme, and the access log line each tunnel leaves."""
import hashlib
import json

import pytest

from clients import curl, curl_sha256
from harness import PASSWORDS
from servers import det_bytes, det_sha256

MODES = ["socks5-hostname", "socks5", "http-forward", "http-connect"]


def curl_args(proxy, mode, user, pw):
    if mode == "socks5-hostname":
        return ["--socks5-hostname", f"{user}:{pw}@127.0.0.1:{proxy.socks_port}"]
    if mode == "socks5":
        return ["--socks5", f"{user}:{pw}@127.0.0.1:{proxy.socks_port}"]
    if mode == "http-forward":
        return ["-x", f"http://{user}:{pw}@127.0.0.1:{proxy.http_port}"]
    if mode == "http-connect":
        return ["-p", "-x", f"http://{user}:{pw}@127.0.0.1:{proxy.http_port}"]
    raise ValueError(mode)


def origin_url(proxy, servers, mode, path, origin=None):
    """--socks5 resolves on the client, so it gets the literal; the other modes let the proxy
    resolve origin.test through the test DNS server (peers use the system resolver: literal)."""
    port = (origin or servers.origin).port
    host = "127.0.0.1" if mode == "socks5" or proxy.kind == "peer" else "origin.test"
    return f"http://{host}:{port}{path}"


@pytest.mark.parametrize("mode", MODES)
def test_small_bodies_byte_for_byte(proxy, servers, mode):
    args = curl_args(proxy, mode, "alice", PASSWORDS["alice"])
    for path, n in (("/bytes/0", 0), ("/bytes/1", 1), ("/bytes/100003", 100003),
                    ("/chunked/70001", 70001), ("/close/12345", 12345)):
        r = curl(args + ["-f", origin_url(proxy, servers, mode, path)])
        assert r.returncode == 0, f"{mode} {path}: curl rc={r.returncode} {r.stderr.decode()}"
        assert len(r.stdout) == n, f"{mode} {path}: got {len(r.stdout)} bytes, want {n}"
        assert r.stdout == det_bytes(n), f"{mode} {path}: body differs"


@pytest.mark.parametrize("mode", MODES)
def test_download_64mib_sha256(proxy, servers, mode):
    n = 64 << 20
    rc, sha, size, err = curl_sha256(curl_args(proxy, mode, "alice", PASSWORDS["alice"])
                                     + ["-f", origin_url(proxy, servers, mode, f"/bytes/{n}")])
    assert rc == 0, f"curl rc={rc}: {err}"
    assert size == n
    assert sha == det_sha256(n)


@pytest.mark.parametrize("mode", MODES)
def test_upload_16mib_sha256(proxy, servers, mode, tmp_path):
    n = 16 << 20
    f = tmp_path / "up.bin"
    f.write_bytes(det_bytes(n))
    r = curl(curl_args(proxy, mode, "alice", PASSWORDS["alice"])
             + ["-f", "--data-binary", f"@{f}", "-H", "Content-Type: application/octet-stream",
                origin_url(proxy, servers, mode, "/sha256")])
    assert r.returncode == 0, f"curl rc={r.returncode}: {r.stderr.decode()}"
    got = json.loads(r.stdout)
    assert got == {"len": n, "sha256": det_sha256(n)}


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("user", ["alice", "bob", "carol"])
@pytest.mark.parametrize("mode", MODES)
def test_every_hash_scheme(proxy, servers, mode, user):
    """alice: sha512-crypt $6$, bob: yescrypt $y$, carol: bcrypt $2b$ — twice each, the second
    time through the credential cache."""
    args = curl_args(proxy, mode, user, PASSWORDS[user])
    for _ in range(2):
        r = curl(args + ["-f", origin_url(proxy, servers, mode, "/bytes/4099")])
        assert r.returncode == 0, f"{user} via {mode}: curl rc={r.returncode} {r.stderr.decode()}"
        assert r.stdout == det_bytes(4099)


@pytest.mark.uringproxy_only
@pytest.mark.parametrize("mode", ["socks5-hostname", "http-connect", "http-forward"])
def test_access_log_line(proxy, servers, mode):
    start = proxy.mark()
    n = 300007
    r = curl(curl_args(proxy, mode, "bob", PASSWORDS["bob"])
             + ["-f", origin_url(proxy, servers, mode, f"/bytes/{n}")])
    assert r.returncode == 0, r.stderr.decode()
    # The log is written off the workers, so a line of an earlier test's tunnel can still
    # arrive after `start`: wait for this transfer's line.
    rec = proxy.wait_access_log(lambda o: o.get("user") == "bob" and
                                isinstance(o.get("bytes_down"), int) and o["bytes_down"] >= n,
                                timeout=20, start=start)
    assert rec is not None, "no access-log JSON line for bob; stderr:\n" + \
        "\n".join(proxy.stderr_lines(start))
    for key in ("ts", "user", "group", "client", "target", "route", "bytes_up", "bytes_down",
                "duration_ms", "result"):
        assert key in rec, f"access log lacks {key!r}: {rec}"
    assert str(servers.origin.port) in str(rec["target"]), rec
    assert "127.0.0.1" in str(rec["client"]), rec
    assert isinstance(rec["bytes_down"], int) and rec["bytes_down"] >= n, rec
    assert isinstance(rec["bytes_up"], int) and rec["bytes_up"] > 0, rec
    assert isinstance(rec["duration_ms"], (int, float)) and rec["duration_ms"] >= 0, rec
