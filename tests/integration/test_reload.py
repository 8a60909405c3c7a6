"""README.md: SIGHUP reloads config and users; a running tunnel survives a reload."""
import json
import signal
import time

import pytest

from clients import echo_roundtrip, socks5_open
from harness import PASSWORDS, _crypt, users_doc

pytestmark = pytest.mark.uringproxy_only


def test_sighup_reloads_users(fresh_proxy, servers):
    p = fresh_proxy()
    held = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert held.rep == 0
    r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, user="frank",
                    pw="frank-pw-R4nd")
    assert r.auth_status == 0x01, r
    r.sock.close()
    doc = users_doc()
    doc["users"].append({"username": "frank", "password": _crypt("sha512", "frank-pw-R4nd")})
    (p.workdir / "users.json").write_text(json.dumps(doc))
    p.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while True:
        r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, user="frank",
                        pw="frank-pw-R4nd")
        ok = r.auth_status == 0 and r.rep == 0
        r.sock.close()
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ok, "a user added to users.json is not accepted after SIGHUP"
    assert p.alive()
    echo_roundtrip(held.sock, b"the tunnel opened before the reload still works")
    held.sock.close()
    assert "frank-pw-R4nd" not in p.output_text()


# ---------------------------------------------------------------------------------------------
def _peak_rss_kib(pid):
    """VmHWM: the peak, so memory taken and given back during the reload still shows."""
    for ln in open(f"/proc/{pid}/status"):
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1])
    raise AssertionError("no VmHWM")


def _reload(p):
    from ctl_helpers import run_ctl
    return run_ctl(["--socket", str(p.workdir / "run" / "control.sock"), "reload"])


def _alice_served(p, servers):
    r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    ok = r.auth_status == 0 and r.rep == 0
    if ok:
        echo_roundtrip(r.sock, b"still served")
    r.sock.close()
    return ok


def test_reload_refuses_an_oversize_users_file_before_reading_it(fresh_proxy, servers):
    """Issue 14 item 19: a 200 MB users.json is refused with its size, the cap and the field to
    raise, without being read (peak RSS stays put; reading it took the proxy from 22 to 264 MiB),
    and the running snapshot keeps serving."""
    p = fresh_proxy()
    users = p.workdir / "users.json"
    good = users.read_text()
    assert _alice_served(p, servers)
    rss_before = _peak_rss_kib(p.pid)
    with open(users, "wb") as f:  # sparse: 200 MB by fstat, no disk used
        f.truncate(200 << 20)
    mark = p.mark()
    try:
        r = _reload(p)
        assert r.rc == 1, r
        want = ("users.json: is 209715200 bytes (200.0 MiB), more than the cap of 67108864 bytes "
                "(64.0 MiB); raise limits.max_config_file_bytes in ")
        assert want in r.err, r
        assert p.err.wait_for(lambda ln: want in ln, 20, mark), "the daemon did not log it"
        grew = _peak_rss_kib(p.pid) - rss_before
        assert grew < 32 * 1024, f"peak RSS grew by {grew} KiB on a refused reload"
        assert _alice_served(p, servers), "the old snapshot no longer serves"
    finally:
        users.write_text(good)
    # SIGHUP takes the same path: refused, still serving.
    with open(users, "wb") as f:
        f.truncate(200 << 20)
    mark = p.mark()
    try:
        p.signal(signal.SIGHUP)
        assert p.err.wait_for(lambda ln: "reload refused" in ln, 20, mark), p.stderr_lines(mark)
        assert _alice_served(p, servers)
    finally:
        users.write_text(good)
    r = _reload(p)
    assert r.rc == 0, r


def test_reload_errors_name_the_user(fresh_proxy, servers):
    """Issue 14 item 2: a reload refused for one user's field names the user."""
    p = fresh_proxy()
    doc = users_doc()
    assert doc["users"][3]["username"] == "dave"
    doc["users"][3]["password"] = "dave-plain-Wz7q"
    (p.workdir / "users.json").write_text(json.dumps(doc))
    mark = p.mark()
    r = _reload(p)
    want = ('users.json: user "dave" (users[3]).password: not a crypt(3) hash (use openssl '
            'passwd -6 or uringproxyctl user add)')
    assert r.rc == 1 and want in r.err, r
    assert p.err.wait_for(lambda ln: want in ln, 20, mark), "the daemon did not log it"
    assert "dave-plain-Wz7q" not in r.err + r.out + p.output_text()
    assert _alice_served(p, servers)
    (p.workdir / "users.json").write_text(json.dumps(users_doc()))


def test_reload_reordering_and_removing_listeners_keeps_each_port_on_its_protocol(fresh_proxy):
    """Reloads that swap the listeners' order or drop one while clients keep connecting: every
    client is answered in its port's protocol. (An accept completing between the new snapshot
    and the worker's listener sync used to read its config by index from the new list: the
    other protocol, or past the end.)"""
    import socket
    import threading
    from collections import Counter

    p = fresh_proxy()
    socks = {"name": "socks", "protocol": "socks5", "listen": f"127.0.0.1:{p.socks_port}"}
    http = {"name": "http", "protocol": "http", "listen": f"127.0.0.1:{p.http_port}"}
    probes = {
        p.socks_port: (b"\x05\x01\x00", b"\x05"),  # auth required: 05 ff, still SOCKS5
        p.http_port: (b"GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
                      b"HTTP/1.1 "),
    }
    stop = threading.Event()
    outcomes = Counter()
    wrong = []

    def hammer(port):
        probe, want = probes[port]
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                outcomes[(port, "not listening")] += 1  # a layout without this port
                continue
            try:
                s.sendall(probe)
                got = s.recv(64)
            except ConnectionResetError:
                got = None  # in the backlog of a listener being closed
            except OSError as e:
                got = repr(e).encode()
            finally:
                s.close()
            if got is None:
                outcomes[(port, "reset")] += 1
            elif got.startswith(want):
                outcomes[(port, "ok")] += 1
            else:
                wrong.append((port, got[:40]))

    threads = [threading.Thread(target=hammer, args=(port,), daemon=True)
               for port in probes for _ in range(3)]
    for t in threads:
        t.start()
    layouts = [[http, socks], [socks], [socks, http], [http], [http, socks], [socks, http]]
    try:
        for i in range(30):
            p.config["listeners"] = layouts[i % len(layouts)]
            p.write_files()
            mark = p.mark()
            p.signal(signal.SIGHUP)
            assert p.err.wait_for(lambda ln: "reloaded: generation" in ln, 20, mark), \
                f"reload {i} not applied"
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not wrong, f"{len(wrong)} client(s) answered in the wrong protocol: {wrong[:5]}"
    assert outcomes[(p.socks_port, "ok")] > 0 and outcomes[(p.http_port, "ok")] > 0, outcomes
    # The last layout has both, each on its own protocol.
    for port, (probe, want) in probes.items():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(probe)
            assert s.recv(64).startswith(want)
