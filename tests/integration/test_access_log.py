"""The access log is written off the workers: complete after a burst and at SIGTERM, flushed
into the old file on SIGHUP (logrotate), and a log that cannot be written does not stall
relaying (its lines are dropped and counted in uringproxy_access_log_dropped_total)."""
import json
import os
import signal
import socket
import threading
import time
import urllib.request

import pytest

from clients import echo_roundtrip, socks5_open
from harness import PASSWORDS
from servers import free_port

pytestmark = pytest.mark.uringproxy_only


def short_connections(port, n, threads=8):
    """n clients that offer no acceptable method: the proxy answers 05 ff and closes, and its
    log line is written before it closes (so it is buffered once the client sees EOF)."""
    errors = []

    def run(k):
        try:
            for _ in range(k):
                with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                    s.sendall(b"\x05\x01\x00")
                    while s.recv(64):
                        pass
        except OSError as e:
            errors.append(e)

    ts = [threading.Thread(target=run, args=(n // threads + (i < n % threads),))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]


def log_lines(path, settled=True):
    """The whole lines in the log. While the proxy runs, its log thread may be mid-write (a
    reader can see part of a write(2) to a regular file), so only a settled log (the writer has
    exited or gone quiet) must end in a newline."""
    data = path.read_bytes() if path.exists() else b""
    if not settled:
        data = data[: data.rfind(b"\n") + 1]
    assert not data or data.endswith(b"\n"), "the log ends in a partial line"
    lines = data.decode().splitlines()
    for ln in lines:
        rec = json.loads(ln)  # whole lines, never two run together
        assert "result" in rec and "ts" in rec, ln
    return lines


def test_complete_after_a_burst_of_2000_and_sigterm(fresh_proxy, tmp_path):
    log = tmp_path / "access.log"
    p = fresh_proxy({"access_log": str(log)})
    short_connections(p.socks_port, 2000)
    p.signal(signal.SIGTERM)  # at once: what is still buffered is written on the way out
    assert p.wait_exit(30) == 0
    assert len(log_lines(log)) == 2000


def test_sighup_writes_what_came_before_into_the_rotated_file(fresh_proxy, tmp_path):
    log = tmp_path / "access.log"
    p = fresh_proxy({"access_log": str(log)})
    short_connections(p.socks_port, 500)
    rotated = tmp_path / "access.log.1"
    os.rename(log, rotated)  # what logrotate does, then SIGHUP
    mark = p.mark()
    p.signal(signal.SIGHUP)
    assert p.err.wait_for(lambda ln: "reloaded: generation" in ln, 20, mark)
    deadline = time.monotonic() + 20
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.exists(), "the access log was not reopened after SIGHUP"
    # Every line of the first burst was buffered before the signal: all go to the old file
    # (written by the log's thread before it swaps the new file in).
    deadline = time.monotonic() + 20
    while len(log_lines(rotated, settled=False)) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(log_lines(rotated)) == 500
    assert len(log_lines(log)) == 0
    short_connections(p.socks_port, 100)
    p.signal(signal.SIGTERM)
    assert p.wait_exit(30) == 0
    assert len(log_lines(rotated)) + len(log_lines(log)) == 600
    assert len(log_lines(log)) > 0


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as r:
        for ln in r.read().decode().splitlines():
            if ln.startswith(name + " "):
                return int(ln.split()[1])
    return None


def test_a_log_that_does_not_drain_does_not_stall_relaying(fresh_proxy, servers, tmp_path):
    """The log is a FIFO nobody reads: once its 64 KiB fill, write(2) blocks. Before, that
    blocked the worker that wrote, and with it every tunnel on that worker."""
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the open succeeds
    mport = free_port()
    p = fresh_proxy({"access_log": str(fifo), "metrics": {"listen": f"127.0.0.1:{mport}"}})
    try:
        # ~200 bytes a line: 3000 lines are several times what the pipe holds.
        short_connections(p.socks_port, 3000)
        # Every worker still relays: a few tunnels (SO_REUSEPORT spreads them over the workers).
        for i in range(8):
            r = socks5_open(p.socks_port, "127.0.0.1", servers.echo.port,
                            pw=PASSWORDS["alice"])
            assert r.rep == 0, r
            echo_roundtrip(r.sock, b"still relaying %d" % i)
            r.sock.close()
        dropped = metric(mport, "uringproxy_access_log_dropped_total")
        assert dropped is not None, "no uringproxy_access_log_dropped_total in /metrics"
        assert dropped >= 0
    finally:
        # Let the log drain so the proxy can write out its last lines and exit.
        done = threading.Event()

        def drain():
            while not done.is_set():
                try:
                    if not os.read(reader, 1 << 16):
                        time.sleep(0.01)
                except BlockingIOError:
                    time.sleep(0.01)

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        rc = p.stop()
        done.set()
        t.join(10)
        os.close(reader)
    assert rc == 0


def test_pipelined_bytes_are_counted(proxy, servers):
    """Bytes a client sends in the same write as its handshake (held with it, sent to the target
    first) are tunnel bytes like any other: in bytes_up (and so in usage and quotas)."""
    from clients import http_connect, recv_exact
    start = proxy.mark()
    payload, more = b"pipelined-socks5", b"x" * 1000
    r = socks5_open(proxy.socks_port, "127.0.0.1", servers.echo.port, user="alice",
                    pw=PASSWORDS["alice"], pipelined=True, payload=payload)
    assert r.rep == 0, r
    with r.sock as s:
        assert recv_exact(s, len(payload)) == payload
        s.sendall(more)
        assert recv_exact(s, len(more)) == more
    c, resp = http_connect(proxy.http_port, "127.0.0.1", servers.echo.port, user="bob",
                           pw=PASSWORDS["bob"], extra=b"pipelined-http")
    assert resp.status == 200, resp
    try:
        got = bytes(c.buf)
        c.buf.clear()
        got += recv_exact(c.s, 14 - len(got)) if len(got) < 14 else b""
        assert got == b"pipelined-http", got
    finally:
        c.close()
    for user, n in (("alice", len(payload) + len(more)), ("bob", 14)):
        line = proxy.wait_access_log(lambda o, u=user: o.get("user") == u
                                     and o.get("target") == f"127.0.0.1:{servers.echo.port}",
                                     start=start)
        assert line and line["bytes_up"] == n and line["bytes_down"] == n, (user, line)
