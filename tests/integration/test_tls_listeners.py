"""TLS listeners (issue 10): an `http` listener with `tls` is an HTTPS proxy (what
`curl --proxy https://` and browsers use; ALPN http/1.1), a `socks5` listener with `tls` is
SOCKS5 over TLS. A TLS listener never answers in plaintext; the TLS handshake counts against
handshake_timeout_ms; a cert/key that cannot be loaded or do not match stop --check and start-up
with the file named; a reload with a bad pair keeps the old one, a good pair is used by new
handshakes at once."""
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid

import pytest

from clients import (TIMEOUT, HttpConn, curl, http_request, read_socks5_reply, recv_exact,
                     socks5_auth, socks5_greeting, socks5_request)
from harness import PASSWORDS, proxy_binary
from limits_helpers import scrape
from servers import free_port, wait_until

pytestmark = pytest.mark.uringproxy_only

ALICE = ("alice", PASSWORDS["alice"])


def make_pair(d, name, cn="proxy.test"):
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "3", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:proxy.test",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class TlsProxy:
    def __init__(self, p, d):
        self.p = p
        self.dir = d
        self.cert, self.key = make_pair(d, "server")
        self.https_port = free_port()
        self.socks_tls_port = free_port()

    def listeners(self, cert, key):
        tls = {"cert": str(cert), "key": str(key)}
        return [
            {"name": "socks", "protocol": "socks5", "listen": f"127.0.0.1:{self.p.socks_port}"},
            {"name": "http", "protocol": "http", "listen": f"127.0.0.1:{self.p.http_port}"},
            {"name": "https", "protocol": "http", "listen": f"127.0.0.1:{self.https_port}",
             "tls": tls},
            {"name": "socks-tls", "protocol": "socks5",
             "listen": f"127.0.0.1:{self.socks_tls_port}", "tls": tls},
        ]


@pytest.fixture(scope="module")
def tlsproxy(instances, tmp_path_factory):
    p = instances.make("tls-listeners")
    t = TlsProxy(p, tmp_path_factory.mktemp("tls-pki"))
    p.config["listeners"] = t.listeners(t.cert, t.key)
    t.metrics_port = free_port()
    p.config["metrics"] = {"listen": f"127.0.0.1:{t.metrics_port}"}
    p.start()
    yield t
    p.stop()


def client_ctx(cafile=None, alpn=None):
    ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else \
        ssl._create_unverified_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, ctx, server_name="proxy.test"):
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname=server_name)


def cert_fingerprint(port):
    with tls_connect(port, client_ctx()) as s:
        return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def file_fingerprint(cert):
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------------------------------------
def test_curl_https_proxy_forward(tlsproxy, servers):
    url = f"http://127.0.0.1:{servers.origin.port}/bytes/100000"
    r = curl(["-sS", "--proxy", f"https://127.0.0.1:{tlsproxy.https_port}",
              "--proxy-cacert", str(tlsproxy.cert), "--proxy-user", "alice:" + ALICE[1],
              "-o", "-", "-w", "\n%{http_code}", url])
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition(b"\n")
    assert code == b"200" and len(body) == 100000, (code, len(body), r.stderr)


def test_curl_https_proxy_connect_tunnel(tlsproxy, servers):
    url = f"http://127.0.0.1:{servers.origin.port}/bytes/300000"
    r = curl(["-sS", "-p", "--proxy", f"https://127.0.0.1:{tlsproxy.https_port}",
              "--proxy-cacert", str(tlsproxy.cert), "--proxy-user", "alice:" + ALICE[1],
              "-o", "-", "-w", "\n%{http_code}", url])
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition(b"\n")
    assert code == b"200" and len(body) == 300000, (code, len(body), r.stderr)


def test_https_listener_negotiates_http11_alpn(tlsproxy):
    with tls_connect(tlsproxy.https_port, client_ctx(tlsproxy.cert, ["h2", "http/1.1"])) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        assert s.version() in ("TLSv1.2", "TLSv1.3")


def test_https_proxy_wrong_password_407(tlsproxy, servers):
    with tls_connect(tlsproxy.https_port, client_ctx(tlsproxy.cert)) as s:
        c = HttpConn(0, sock=s)
        hp = f"127.0.0.1:{servers.origin.port}"
        c.send(http_request("GET", f"http://{hp}/bytes/3", host_header=hp,
                            auth=("alice", "wrong")))
        assert c.read_response().status == 407


def socks_over_tls(port, cafile, host, tport, user=ALICE):
    s = tls_connect(port, client_ctx(cafile))
    s.sendall(socks5_greeting((0x02,)))
    assert recv_exact(s, 2) == b"\x05\x02"
    s.sendall(socks5_auth(*user))
    assert recv_exact(s, 2) == b"\x01\x00"
    s.sendall(socks5_request(host, tport))
    rep, _, _ = read_socks5_reply(s)
    return s, rep


def test_socks5_over_tls_echo_bulk(tlsproxy, servers):
    s, rep = socks_over_tls(tlsproxy.socks_tls_port, tlsproxy.cert, "127.0.0.1",
                            servers.echo.port)
    try:
        assert rep == 0
        payload = os.urandom(4 << 20)
        got = bytearray()
        # Interleave: the echo server answers as we send.
        step = 256 << 10
        for i in range(0, len(payload), step):
            s.sendall(payload[i:i + step])
            while len(got) < i + step - (128 << 10):
                d = s.recv(1 << 16)
                assert d, "EOF mid-echo"
                got += d
        while len(got) < len(payload):
            d = s.recv(1 << 16)
            assert d, "EOF mid-echo"
            got += d
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        s.close()


def test_socks5_over_tls_pipelined_handshake(tlsproxy, servers):
    s = tls_connect(tlsproxy.socks_tls_port, client_ctx(tlsproxy.cert))
    try:
        s.sendall(socks5_greeting((0x02,)) + socks5_auth(*ALICE) +
                  socks5_request("127.0.0.1", servers.echo.port) + b"ping-tls")
        assert recv_exact(s, 2) == b"\x05\x02"
        assert recv_exact(s, 2) == b"\x01\x00"
        rep, _, _ = read_socks5_reply(s)
        assert rep == 0
        assert recv_exact(s, 8) == b"ping-tls"
    finally:
        s.close()


@pytest.mark.parametrize("port_attr,plain", [
    ("https_port", b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("socks_tls_port", b"\x05\x01\x02"),
])
def test_tls_listener_never_answers_plaintext(tlsproxy, port_attr, plain):
    s = socket.create_connection(("127.0.0.1", getattr(tlsproxy, port_attr)), timeout=TIMEOUT)
    try:
        s.sendall(plain)
        got = bytearray()
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except (ConnectionResetError, socket.timeout):
            pass
        assert not got.startswith(b"HTTP/") and not got.startswith(b"\x05"), got[:64]
    finally:
        s.close()
    assert tlsproxy.p.alive()


def test_tls_handshake_counts_against_handshake_timeout(tlsproxy):
    # base config: handshake_timeout_ms 2000. A client that connects and sends nothing.
    s = socket.create_connection(("127.0.0.1", tlsproxy.https_port), timeout=TIMEOUT)
    t0 = time.monotonic()
    try:
        assert s.recv(1) == b""
    except ConnectionResetError:
        pass
    finally:
        s.close()
    assert time.monotonic() - t0 < 15


def test_reload_bad_pair_keeps_old_then_good_pair_is_used(tlsproxy):
    t = tlsproxy
    old = file_fingerprint(t.cert)
    assert cert_fingerprint(t.https_port) == old
    other_cert, other_key = make_pair(t.dir, "other")
    # A cert with another pair's key: refused, the old pair keeps serving.
    mark = t.p.mark()
    t.p.config["listeners"] = t.listeners(t.cert, other_key)
    t.p.write_files()
    t.p.signal(signal.SIGHUP)
    assert wait_until(lambda: any(str(other_key) in ln for ln in t.p.stderr_lines(mark)), 20), \
        "the bad key was not reported by name:\n" + t.p.output_text(mark)
    assert cert_fingerprint(t.https_port) == old
    # A good new pair: used by the next handshakes.
    t.p.config["listeners"] = t.listeners(other_cert, other_key)
    t.p.write_files()
    t.p.signal(signal.SIGHUP)
    new = file_fingerprint(other_cert)
    assert wait_until(lambda: cert_fingerprint(t.https_port) == new, 20)
    # Back to the original pair for the other tests.
    t.p.config["listeners"] = t.listeners(t.cert, t.key)
    t.p.write_files()
    t.p.signal(signal.SIGHUP)
    assert wait_until(lambda: cert_fingerprint(t.https_port) == old, 20)


@pytest.mark.parametrize("case", ["missing-cert", "mismatched-key"])
def test_check_and_start_name_the_bad_file(instances, tmp_path_factory, case):
    p = instances.make(f"tls-bad-{case}")
    d = tmp_path_factory.mktemp("tls-bad")
    cert, key = make_pair(d, "a")
    _, key2 = make_pair(d, "b")
    if case == "missing-cert":
        cert = d / "nope.pem"
        named = cert
    else:
        key = key2
        named = key2
    p.config["listeners"] = [{"name": "https", "protocol": "http",
                              "listen": f"127.0.0.1:{p.http_port}",
                              "tls": {"cert": str(cert), "key": str(key)}}]
    p.write_files()
    r = subprocess.run([proxy_binary(), "--check", "--config", str(p.config_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and str(named) in r.stderr, (r.returncode, r.stderr)
    r = subprocess.run([proxy_binary(), "--config", str(p.config_path)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and str(named) in r.stderr, (r.returncode, r.stderr[-2000:])


def handshakes(t):
    m = scrape(t.metrics_port)
    return {k: v for k, v in m.items() if k.startswith("uringproxy_tls_handshakes_total")}


def test_session_resumption_and_handshake_metrics(tlsproxy, servers):
    t = tlsproxy
    ctx = client_ctx(t.cert)
    hp = f"127.0.0.1:{servers.origin.port}"
    req = http_request("GET", f"http://{hp}/bytes/10", host_header=hp, auth=ALICE)
    s1 = tls_connect(t.https_port, ctx)
    c = HttpConn(0, sock=s1)
    c.send(req)
    assert c.read_response().status == 200  # TLS 1.3 tickets arrive after the handshake
    session = s1.session
    s1.close()
    raw = socket.create_connection(("127.0.0.1", t.https_port), timeout=TIMEOUT)
    s2 = ctx.wrap_socket(raw, server_hostname="proxy.test", session=session)
    try:
        assert s2.session_reused, "the second handshake did not resume"
        c = HttpConn(0, sock=s2)
        c.send(req)
        assert c.read_response().status == 200
    finally:
        s2.close()
    key = 'uringproxy_tls_handshakes_total{listener="https",result="%s"}'
    assert wait_until(lambda: handshakes(t).get(key % "resumed", 0) >= 1, 10), handshakes(t)
    assert handshakes(t).get(key % "ok", 0) >= 1, handshakes(t)
    m = scrape(t.metrics_port)
    assert m.get("uringproxy_tls_handshake_duration_seconds_count", 0) >= 2, m
    assert "uringproxy_ktls_available" in m


def test_failed_and_timed_out_handshakes_are_counted(tlsproxy):
    t = tlsproxy
    key = 'uringproxy_tls_handshakes_total{listener="socks-tls",result="%s"}'
    before = handshakes(t)
    s = socket.create_connection(("127.0.0.1", t.socks_tls_port), timeout=TIMEOUT)
    # Plaintext SOCKS5 on a TLS listener (more than a TLS record header, so it is judged now).
    s.sendall(socks5_greeting((0x02,)) + socks5_auth(*ALICE))
    try:
        s.recv(100)
    except ConnectionResetError:
        pass
    s.close()
    s = socket.create_connection(("127.0.0.1", t.socks_tls_port), timeout=TIMEOUT)
    try:
        s.recv(1)  # nothing sent: closed at handshake_timeout_ms
    except ConnectionResetError:
        pass
    s.close()

    def grew(result):
        return handshakes(t).get(key % result, 0) > before.get(key % result, 0)
    assert wait_until(lambda: grew("failed") and grew("timeout"), 10), (before, handshakes(t))


# --- bad input and odd clients ----------------------------------------------------------------
def socks_echo_ok(sock, servers, write=lambda s, b: s.sendall(b)):
    write(sock, socks5_greeting((0x02,)))
    assert recv_exact(sock, 2) == b"\x05\x02"
    write(sock, socks5_auth(*ALICE))
    assert recv_exact(sock, 2) == b"\x01\x00"
    write(sock, socks5_request("127.0.0.1", servers.echo.port))
    rep, _, _ = read_socks5_reply(sock)
    assert rep == 0
    write(sock, b"odd-client")
    assert recv_exact(sock, 10) == b"odd-client"


def test_client_hello_trickled_one_byte_at_a_time(tlsproxy, servers):
    """The handshake driven by hand over memory BIOs, every ciphertext byte its own send."""
    ctx = client_ctx(tlsproxy.cert)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="proxy.test")
    raw = socket.create_connection(("127.0.0.1", tlsproxy.socks_tls_port), timeout=TIMEOUT)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = out.read()
            for i in range(len(data)):
                raw.send(data[i:i + 1])
            if done:
                break
            d = raw.recv(65536)
            assert d, "closed during the handshake"
            inc.write(d)

        def write(_, b):
            obj.write(b)
            raw.sendall(out.read())

        class Reader:
            def recv(self, n):
                while True:
                    try:
                        return obj.read(n)
                    except ssl.SSLWantReadError:
                        d = raw.recv(65536)
                        if not d:
                            return b""
                        inc.write(d)
        socks_echo_ok(Reader(), servers, write=lambda _s, b: write(None, b))
    finally:
        raw.close()


def test_one_byte_records_and_unrequested_client_cert(tlsproxy, servers):
    ctx = client_ctx(tlsproxy.cert)
    ctx.load_cert_chain(str(tlsproxy.cert), str(tlsproxy.key))  # nobody asked for it
    s = tls_connect(tlsproxy.socks_tls_port, ctx)

    def one_byte_records(sock, b):
        for i in range(len(b)):
            sock.sendall(b[i:i + 1])  # each write is its own TLS record
    try:
        socks_echo_ok(s, servers, write=one_byte_records)
    finally:
        s.close()


def test_close_during_handshake_leaks_nothing(tlsproxy, servers):
    p = tlsproxy.p
    ctx = client_ctx(tlsproxy.cert)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="proxy.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    # Warm up, so lazily made per-worker state is not counted as a leak.
    for _ in range(3):
        with tls_connect(tlsproxy.https_port, client_ctx()):
            pass
    assert wait_until(lambda: p.fd_count() > 0, 5)
    before = p.fd_count()
    for cut in (1, 5, len(hello) // 2, len(hello)):
        s = socket.create_connection(("127.0.0.1", tlsproxy.socks_tls_port), timeout=TIMEOUT)
        s.sendall(hello[:cut])
        s.close()
    assert wait_until(lambda: p.fd_count() <= before, 15), (before, p.fd_table())
    s = tls_connect(tlsproxy.socks_tls_port, client_ctx(tlsproxy.cert))
    try:
        socks_echo_ok(s, servers)
    finally:
        s.close()


def test_renegotiation_is_refused_and_others_served(tlsproxy, servers):
    # s_client's "R" asks for a TLS 1.2 renegotiation; the listener has none.
    r = subprocess.run(["openssl", "s_client", "-tls1_2", "-connect",
                        f"127.0.0.1:{tlsproxy.https_port}", "-servername", "proxy.test"],
                       input=b"R\n", capture_output=True, timeout=60)
    text = (r.stdout + r.stderr).decode(errors="replace")
    assert "RENEGOTIATING" in text, text[-2000:]
    assert "Secure Renegotiation IS NOT supported" in text or "no renegotiation" in text.lower() \
        or r.returncode != 0, text[-2000:]
    assert tlsproxy.p.alive()
    s = tls_connect(tlsproxy.socks_tls_port, client_ctx(tlsproxy.cert))
    try:
        socks_echo_ok(s, servers)
    finally:
        s.close()


def test_stunnel_client_in_front_of_plain_socks5_client(tlsproxy, servers, tmp_path):
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if not stunnel:
        pytest.skip("stunnel is not installed")
    port = free_port()
    conf = tmp_path / "stunnel-client.conf"
    conf.write_text(f"foreground = yes\npid =\n[c]\nclient = yes\n"
                    f"accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{tlsproxy.socks_tls_port}\n"
                    f"CAfile = {tlsproxy.cert}\nverifyPeer = yes\ncheckHost = proxy.test\n")
    proc = subprocess.Popen([stunnel, str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_until(up, 20), "stunnel did not start"
        url = f"http://127.0.0.1:{servers.origin.port}/bytes/500000"
        r = curl(["--socks5", f"127.0.0.1:{port}", "--proxy-user", "alice:" + ALICE[1],
                  "-o", "-", "-w", "\n%{http_code}", url])
        body, _, code = r.stdout.rpartition(b"\n")
        assert r.returncode == 0 and code == b"200" and len(body) == 500000, r.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_cert_rotation_under_load_keeps_open_tunnels(tlsproxy, servers):
    """Tunnels open across a certificate change carry on with their session; new handshakes
    see the new certificate."""
    t = tlsproxy
    tunnels = []
    for _ in range(8):
        s, rep = socks_over_tls(t.socks_tls_port, t.cert, "127.0.0.1", servers.echo.port)
        assert rep == 0
        tunnels.append(s)
    other_cert, other_key = make_pair(t.dir, "rotated")
    try:
        t.p.config["listeners"] = t.listeners(other_cert, other_key)
        t.p.write_files()
        t.p.signal(signal.SIGHUP)
        new = file_fingerprint(other_cert)
        deadline = time.monotonic() + 20
        rounds = 0
        while time.monotonic() < deadline:
            for i, s in enumerate(tunnels):
                msg = f"round {rounds} tunnel {i}".encode()
                s.sendall(msg)
                assert recv_exact(s, len(msg)) == msg
            rounds += 1
            if cert_fingerprint(t.socks_tls_port) == new:
                break
        assert cert_fingerprint(t.socks_tls_port) == new
        for i, s in enumerate(tunnels):
            s.sendall(b"after")
            assert recv_exact(s, 5) == b"after", f"tunnel {i} broke across the rotation"
    finally:
        for s in tunnels:
            s.close()
        t.p.config["listeners"] = t.listeners(t.cert, t.key)
        t.p.write_files()
        t.p.signal(signal.SIGHUP)
        assert wait_until(lambda: cert_fingerprint(t.https_port) == file_fingerprint(t.cert), 20)
