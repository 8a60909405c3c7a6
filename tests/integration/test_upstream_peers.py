"""The upstream peers themselves, without uringproxy: each leaves from the address the routing
tests expect, stunnel presents the certificates the TLS tests rely on, and the misbehaving
upstreams misbehave. If one of these fails, the routing tests' verdicts mean nothing."""
import socket
import ssl
import struct

import sys

import pytest

if not {"upstream_conftest", "upstreams"} & set(sys.modules):  # once, before the first import
    pytest.register_assert_rewrite("upstream_conftest", "upstreams")

import upstreams as U
from clients import curl, recv_exact, stream_end

pytest_plugins = ["upstream_conftest"]
pytestmark = pytest.mark.uringproxy_only  # not a proxy test: nothing to run in peer mode


def socks_connect(sock, host, port, user=None, pw=None):
    """RFC 1928/1929 client over an open socket; returns the reply code."""
    sock.sendall(b"\x05\x01" + (b"\x02" if user else b"\x00"))
    ver, m = recv_exact(sock, 2)
    assert ver == 5 and m == (2 if user else 0), (ver, m)
    if user:
        sock.sendall(b"\x01" + bytes([len(user)]) + user.encode() + bytes([len(pw)])
                     + pw.encode())
        _v, st = recv_exact(sock, 2)
        if st != 0:
            return ("auth", st)
    hb = host.encode()
    sock.sendall(b"\x05\x01\x00\x03" + bytes([len(hb)]) + hb + struct.pack("!H", port))
    head = recv_exact(sock, 4)
    recv_exact(sock, {1: 4, 4: 16}.get(head[3], 0) + 2)
    return head[1]


def get_ip(sock, target):
    status, body = U.http_get_over(sock, "127.0.0.1", target.port)
    assert status == 200
    return body.decode()


def test_dante_a_exits_127_0_0_2_with_auth(ustack):
    s = socket.create_connection(("127.0.0.1", ustack.dante_a.port), timeout=10)
    assert socks_connect(s, "127.0.0.1", ustack.target.port, U.SOCKS_USER, U.SOCKS_PASSWORD) == 0
    assert get_ip(s, ustack.target) == U.DANTE_A_EXIT
    s = socket.create_connection(("127.0.0.1", ustack.dante_a.port), timeout=10)
    assert socks_connect(s, "127.0.0.1", ustack.target.port, U.SOCKS_USER,
                         U.WRONG_UPSTREAM_PASSWORD) == ("auth", 1)


def test_dante_b_exits_127_0_0_4_without_auth(ustack):
    s = socket.create_connection(("127.0.0.1", ustack.dante_b.port), timeout=10)
    assert socks_connect(s, "localhost", ustack.target.port) == 0
    assert get_ip(s, ustack.target) == U.DANTE_B_EXIT


def test_dante_refused_target_replies_0x05(ustack):
    s = socket.create_connection(("127.0.0.1", ustack.dante_a.port), timeout=10)
    assert socks_connect(s, "127.0.0.1", ustack.closed, U.SOCKS_USER, U.SOCKS_PASSWORD) == 5


def test_tinyproxy_exits_127_0_0_3(ustack):
    base = ["-x", f"http://127.0.0.1:{ustack.tiny.port}"]
    for extra in ([], ["-p"]):
        r = curl(extra + base + ["--proxy-user", f"{U.HTTP_USER}:{U.HTTP_PASSWORD}", "-f",
                                 ustack.target.url("/ip", "localhost")])
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode() == U.TINYPROXY_EXIT
    assert any(ln.startswith(f"CONNECT localhost:{ustack.target.port}")
               for ln in ustack.tiny.connect_requests())


def test_tinyproxy_error_codes(ustack):
    """What tinyproxy answers a CONNECT with: wrong credentials 401 (not 407), refused target
    500. uringproxy must turn both into 502."""
    def status(user_pw, port):
        r = curl(["-p", "-x", f"http://127.0.0.1:{ustack.tiny.port}", "--proxy-user", user_pw,
                  "-o", "/dev/null", "-w", "%{http_connect}", f"http://127.0.0.1:{port}/"])
        return r.stdout.decode()
    assert status(f"{U.HTTP_USER}:{U.WRONG_UPSTREAM_PASSWORD}", ustack.target.port) in ("401",
                                                                                       "407")
    assert status(f"{U.HTTP_USER}:{U.HTTP_PASSWORD}", ustack.closed) in ("500", "502", "503")


def tls_client(port, cafile, name):
    ctx = ssl.create_default_context(cafile=str(cafile))
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                           server_hostname=name)


def test_stunnel_dante_verifies_by_name_and_ip(ustack):
    for name in (U.TLS_NAME, "127.0.0.1"):
        s = tls_client(ustack.st_dante.port, ustack.pki.ca, name)
        assert socks_connect(s, "127.0.0.1", ustack.target.port, U.SOCKS_USER,
                             U.SOCKS_PASSWORD) == 0
        assert get_ip(s, ustack.target) == U.DANTE_A_EXIT


def test_stunnel_tinyproxy_https_connect(ustack):
    s = tls_client(ustack.st_tiny.port, ustack.pki.ca, U.TLS_NAME)
    import base64
    cred = base64.b64encode(f"{U.HTTP_USER}:{U.HTTP_PASSWORD}".encode()).decode()
    hp = f"127.0.0.1:{ustack.target.port}"
    s.sendall(f"CONNECT {hp} HTTP/1.1\r\nHost: {hp}\r\nProxy-Authorization: Basic {cred}\r\n\r\n"
              .encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head
    assert get_ip(s, ustack.target) == U.TINYPROXY_EXIT


@pytest.mark.parametrize("which,name", [("st_wrongca", U.TLS_NAME), ("st_wrongname", U.TLS_NAME)])
def test_stunnel_bad_certs_fail_verification(ustack, which, name):
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(getattr(ustack, which).port, ustack.pki.ca, name)


def test_stunnel_wrong_ca_still_works_without_verification(ustack):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", ustack.st_wrongca.port),
                                                 timeout=10), server_hostname=U.TLS_NAME)
    assert socks_connect(s, "127.0.0.1", ustack.target.port, U.SOCKS_USER, U.SOCKS_PASSWORD) == 0
    assert get_ip(s, ustack.target) == U.DANTE_A_EXIT


def test_recorder_records_names_unresolved(ustack):
    s = socket.create_connection(("127.0.0.1", ustack.recorder.port), timeout=10)
    n = len(ustack.recorder.log)
    assert socks_connect(s, "localhost", ustack.target.port, "recuser", U.SOCKS_PASSWORD) == 0
    assert get_ip(s, ustack.target) == U.RECORDER_EXIT
    assert ustack.recorder.log[n]["atyp"] == 3 and ustack.recorder.log[n]["host"] == "localhost"


def test_misbehaving_upstreams(ustack):
    s = socket.create_connection(("127.0.0.1", ustack.garbage.port), timeout=10)
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2) != b"\x05\x00"
    s = socket.create_connection(("127.0.0.1", ustack.silent.port), timeout=1)
    s.sendall(b"\x05\x01\x00")
    with pytest.raises(socket.timeout):
        s.recv(1)
    s = socket.create_connection(("127.0.0.1", ustack.http403.port), timeout=10)
    s.sendall(b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 403")


def test_dante_restarts_on_the_same_port_after_kill9(ustack, tmp_path):
    d = U.Dante(tmp_path / "dante-k", external=U.DANTE_A_EXIT, auth=False).start()
    try:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        assert socks_connect(s, "127.0.0.1", ustack.target.port) == 0
        d.kill9()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
        assert stream_end(s, 10) in ("eof", "reset")
        d.start()
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        assert socks_connect(s, "127.0.0.1", ustack.target.port) == 0
        assert get_ip(s, ustack.target) == U.DANTE_A_EXIT
    finally:
        d.stop()



def test_dante_resets_after_refusing(ustack):
    """A peer quirk the proxy has to live with: dante sends its 0x05 reply, then a TCP reset
    (not a FIN). stunnel in front of it, seeing the reset, often drops what it had not yet
    passed on, so a socks5s client may see a clean close with no reply at all (the proxy then
    reads it as an upstream closing during its handshake)."""
    s = socket.create_connection(("127.0.0.1", ustack.dante_a.port), timeout=10)
    assert socks_connect(s, "127.0.0.1", ustack.closed, U.SOCKS_USER, U.SOCKS_PASSWORD) == 5
    assert stream_end(s, 10) in ("reset", "eof")
