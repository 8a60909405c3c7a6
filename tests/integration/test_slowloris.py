"""Issue 5: a slowloris of 2,000 clients (half SOCKS5, half HTTP), each sending one byte about
every 2 s so its handshake never completes, does not stop a normal client from being served
within its usual latency. The proxy closes the slow clients at handshake_timeout_ms (the
attacker reconnects, as a real one would); afterwards its fd count returns to its baseline.

The attacker runs in a child process (this file run as a script), so its work does not share
the test process's interpreter lock with the latency measurements."""
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time

CLIENTS = 2000
BYTE_INTERVAL = 2.0
HANDSHAKE_TIMEOUT_MS = 10000
ATTACK_SECONDS = 24.0      # measurement window under attack (covers two timeout waves)
SAMPLE_EVERY = 0.4
# A normal client is served within this during the attack. Not 1 s: when thousands of slow
# clients reconnect at once a SYN can meet a full accept queue, and TCP's first SYN
# retransmission alone is 1 s on Linux (seen at 1.38 s on a loaded CI machine). The median
# check below is the one that says the proxy keeps serving normally.
ABS_BOUND = 3.5
REL_BOUND = 20.0           # ... and its median within 20x its baseline (floor below)
REL_FLOOR = 0.05

# Never-ending handshakes: a SOCKS5 greeting (complete after 3 bytes, so the proxy answers and
# waits for RFC 1929 auth) followed by a 255-byte username; an HTTP request line that never ends.
SOCKS_STREAM = b"\x05\x01\x02" + b"\x01\xff" + b"u" * 255 + b"\xff" + b"p" * 255
HTTP_STREAM = b"GET http://slow.test/" + b"a" * 4000


# ---------------------------------------------------------------------------------------------
# The attacker (child process)
def attack(socks_port, http_port, n, max_seconds):
    import random
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    rnd = random.Random(5)
    conns = {}  # fd -> [sock, stream, pos, next_send]
    stats = {"opened": 0, "closed_by_proxy": 0, "connect_errors": 0, "max_open": 0,
             "ready_at": None}
    t_start = time.monotonic()

    def open_one(i):
        port, stream = (socks_port, SOCKS_STREAM) if i % 2 == 0 else (http_port, HTTP_STREAM)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            stats["connect_errors"] += 1
            s.close()
            return
        now = time.monotonic()
        # First byte as soon as the connect completes; then one byte every ~BYTE_INTERVAL.
        conns[s.fileno()] = [s, stream, 0, now + rnd.uniform(0, 0.2), i]
        sel.register(s, selectors.EVENT_READ, s.fileno())
        stats["opened"] += 1

    def drop(fd):
        c = conns.pop(fd, None)
        if c is None:
            return None
        try:
            sel.unregister(c[0])
        except (KeyError, ValueError):
            pass
        c[0].close()
        return c

    to_open = list(range(n))
    stop = False
    reopen = []
    while not stop and time.monotonic() - t_start < max_seconds:
        # Ramp up in batches so the accept queues are not overrun.
        for _ in range(min(100, len(to_open))):
            open_one(to_open.pop(0))
        for i in reopen[:200]:
            open_one(i)
        reopen = reopen[200:]
        if not to_open and stats["ready_at"] is None:
            stats["ready_at"] = time.monotonic() - t_start
            print(f"ready {len(conns)}", flush=True)
        stats["max_open"] = max(stats["max_open"], len(conns))
        now = time.monotonic()
        for fd, c in list(conns.items()):
            if c[3] <= now and c[2] < len(c[1]):
                try:
                    if c[0].send(c[1][c[2]:c[2] + 1]) == 1:
                        c[2] += 1
                    c[3] = now + BYTE_INTERVAL * rnd.uniform(0.9, 1.1)
                except BlockingIOError:
                    c[3] = now + 0.1  # connect still in progress
                except OSError:
                    dropped = drop(fd)
                    stats["closed_by_proxy"] += 1
                    if dropped:
                        reopen.append(dropped[4])
        for key, _ in sel.select(timeout=0.05):
            if key.data is None:  # any line on stdin, or its end, stops the attack
                sys.stdin.readline()
                stop = True
                continue
            c = conns.get(key.data)
            if c is None:
                continue
            try:
                d = c[0].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                drop(key.data)
                stats["closed_by_proxy"] += 1
                reopen.append(c[4])
    for fd in list(conns):
        drop(fd)
    print("stats " + json.dumps(stats), flush=True)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--attack":
    attack(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    sys.exit(0)


# ---------------------------------------------------------------------------------------------
# The test
import pytest  # noqa: E402

from limits_helpers import (check_after_test, connect_from, password, start_proxy,  # noqa: E402
                            stop_proxy, users, wait_until)
from clients import (read_socks5_reply, recv_exact, socks5_auth, socks5_greeting,  # noqa: E402
                     socks5_request)

pytestmark = pytest.mark.uringproxy_only


def normal_client_latency(p, echo_port):
    """connect + SOCKS5 greeting + auth + CONNECT + 1 KiB echo, in seconds."""
    t0 = time.perf_counter()
    s = connect_from(p.socks_port, timeout=10)
    try:
        s.sendall(socks5_greeting((0x02,)))
        assert recv_exact(s, 2) == b"\x05\x02"
        s.sendall(socks5_auth("normal", password("normal")))
        assert recv_exact(s, 2) == b"\x01\x00"
        s.sendall(socks5_request("127.0.0.1", echo_port))
        rep, _, _ = read_socks5_reply(s)
        assert rep == 0, f"normal client refused: 0x{rep:02x}"
        data = os.urandom(1024)
        s.sendall(data)
        assert recv_exact(s, len(data)) == data
    finally:
        s.close()
    return time.perf_counter() - t0


def test_slowloris_does_not_starve_normal_clients(instances, servers):
    p = start_proxy(instances, {"workers": 2,
                                "limits": {"handshake_timeout_ms": HANDSHAKE_TIMEOUT_MS}},
                    users("normal"))
    start = p.mark()
    attacker = None
    try:
        normal_client_latency(p, servers.echo.port)  # warm the credential cache
        base = [normal_client_latency(p, servers.echo.port) for _ in range(15)]
        base_med = statistics.median(base)
        fd0 = p.fd_count()

        attacker = subprocess.Popen(
            [sys.executable, __file__, "--attack", str(p.socks_port), str(p.http_port),
             str(CLIENTS), str(ATTACK_SECONDS + 20)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)))
        line = attacker.stdout.readline()
        assert line.startswith("ready"), \
            f"attacker did not start: {line!r} {attacker.stderr.read() if attacker.poll() else ''}"
        held = wait_until(lambda: p.fd_count() - fd0 >= CLIENTS * 0.75, 15.0, interval=0.2)
        fd_peak = p.fd_count()
        assert held, (f"the proxy never held most of the {CLIENTS} slow clients (fds "
                      f"{fd0} -> {fd_peak}): the attack did not happen")

        during = []
        t_end = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < t_end:
            t = time.monotonic()
            during.append(normal_client_latency(p, servers.echo.port))
            fd_peak = max(fd_peak, p.fd_count())
            time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - t)))

        attacker.stdin.write("stop\n")
        attacker.stdin.flush()
        out, err = attacker.communicate(timeout=30)
        stats = {}
        for ln in out.splitlines():
            if ln.startswith("stats "):
                stats = json.loads(ln[6:])
        attacker = None

        med, worst = statistics.median(during), max(during)
        summary = (f"baseline median {base_med * 1e3:.1f} ms; during the attack median "
                   f"{med * 1e3:.1f} ms, max {worst * 1e3:.1f} ms over {len(during)} samples; "
                   f"proxy fds {fd0} -> peak {fd_peak}; attacker {stats}")
        print(summary)
        assert worst < ABS_BOUND, \
            f"a normal client waited {worst:.2f}s during the attack: {summary}"
        assert med <= max(REL_BOUND * base_med, REL_FLOOR), \
            f"normal clients are much slower during the attack: {summary}"
        # The handshake timeout bounded the slow clients (the first wave at ~10 s at least).
        assert stats.get("closed_by_proxy", 0) >= CLIENTS * 0.75, \
            f"slow clients were not closed at the handshake timeout: {summary}"
        # Everything closed: the proxy's fd count returns near its baseline.
        assert wait_until(lambda: p.fd_count() <= fd0 + 8, 20.0, interval=0.2), \
            f"proxy fds did not return to baseline: {fd0} -> {p.fd_count()} ({summary})"
        assert normal_client_latency(p, servers.echo.port) < ABS_BOUND
    finally:
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait(10)
        check_after_test(p, start)
        stop_proxy(p)
