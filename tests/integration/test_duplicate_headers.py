"""Repeated headers in HTTP proxy traffic. Two Proxy-Authorization headers are a 400 (on
CONNECT and on forwarded requests, also later on a keep-alive connection): which one counts
would be the proxy's guess. Repeated identical Content-Length values ("5" twice, "5, 5") reach
the next hop as one header, both ways; differing values stay a 400 (request) or a 502
(response), and the refused message never reaches the other side."""
import json
import uuid

import pytest

from clients import HttpConn, assert_served, basic, http_request
from harness import PASSWORDS, WRONG_PASSWORD
from servers import _TcpServer, det_bytes

pytestmark = pytest.mark.uringproxy_only

ALICE = basic("alice", PASSWORDS["alice"])
BOB = basic("bob", PASSWORDS["bob"])
WRONG = basic("alice", WRONG_PASSWORD)

# Pairs of credentials sent in one request: whichever the proxy took, the answer is 400.
AUTH_PAIRS = {
    "alice-then-bob": (ALICE, BOB),
    "good-then-wrong": (ALICE, WRONG),
    "wrong-then-good": (WRONG, ALICE),
    "same-twice": (ALICE, ALICE),
}


def _head(method, target, host, headers):
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize("pair", list(AUTH_PAIRS))
def test_connect_two_proxy_authorization_400(proxy, servers, pair):
    first, second = AUTH_PAIRS[pair]
    hp = f"127.0.0.1:{servers.echo.port}"
    before = servers.echo.accepted
    c = HttpConn(proxy.http_port)
    c.send(_head("CONNECT", hp, hp, [("Proxy-Authorization", first),
                                      ("proxy-authorization", second)]))
    r = c.read_response("CONNECT")
    c.close()
    assert r.status == 400, f"CONNECT with two Proxy-Authorization ({pair}): {r}"
    assert servers.echo.accepted == before, "refused CONNECT reached the target"
    assert_served(proxy, servers, "after two Proxy-Authorization headers")


@pytest.mark.parametrize("pair", list(AUTH_PAIRS))
def test_forward_two_proxy_authorization_400(proxy, servers, pair):
    first, second = AUTH_PAIRS[pair]
    hp = f"127.0.0.1:{servers.origin.port}"
    m = uuid.uuid4().hex
    c = HttpConn(proxy.http_port)
    c.send(_head("GET", f"http://{hp}/info?m={m}", hp,
                 [("Proxy-Authorization", first), ("X-Between", "1"),
                  ("Proxy-Authorization", second)]))
    r = c.read_response()
    c.close()
    assert r.status == 400, f"GET with two Proxy-Authorization ({pair}): {r}"
    assert not servers.origin.find(m), "refused request reached the origin"


def test_forward_two_proxy_authorization_on_keepalive_400(proxy, servers):
    """The second request on a connection is parsed as strictly as the first."""
    hp = f"127.0.0.1:{servers.origin.port}"
    m1, m2 = uuid.uuid4().hex, uuid.uuid4().hex
    c = HttpConn(proxy.http_port)
    c.send(_head("GET", f"http://{hp}/info?m={m1}", hp, [("Proxy-Authorization", ALICE)]))
    r = c.read_response()
    assert r.status == 200, r
    c.send(_head("GET", f"http://{hp}/info?m={m2}", hp,
                 [("Proxy-Authorization", ALICE), ("Proxy-Authorization", BOB)]))
    r = c.read_response()
    c.close()
    assert r.status == 400, r
    assert not servers.origin.find(m2), "refused request reached the origin"


# ---------------------------------------------------------------------------------------------
# Content-Length, request side: what the origin saw (its /info record lists every header).
@pytest.mark.parametrize("lengths", [
    [("Content-Length", "5"), ("Content-Length", "5")],
    [("Content-Length", "5, 5")],
    [("content-length", "5,5"), ("X-Between", "1"), ("Content-Length", "5")],
], ids=["twice", "list", "list-and-again"])
def test_forward_duplicate_content_length_reaches_origin_once(proxy, servers, lengths):
    hp = f"127.0.0.1:{servers.origin.port}"
    m = uuid.uuid4().hex
    c = HttpConn(proxy.http_port)
    c.send(http_request("POST", f"http://{hp}/info?m={m}", host_header=hp, headers=lengths,
                        auth=("alice", PASSWORDS["alice"])) + b"hello")
    r = c.read_response()
    assert r.status == 200, r
    rec = json.loads(r.body)
    seen = [v for k, v in rec["headers"] if k.lower() == "content-length"]
    assert seen == ["5"], f"origin saw Content-Length {seen}: {rec['headers']}"
    assert rec["body_len"] == 5, rec
    # The body ended where both sides agree: the connection carries the next request.
    c.send(http_request("GET", f"http://{hp}/bytes/7", host_header=hp,
                        auth=("alice", PASSWORDS["alice"])))
    r = c.read_response()
    c.close()
    assert r.status == 200 and r.body == det_bytes(7), r


@pytest.mark.parametrize("lengths", [
    [("Content-Length", "5"), ("Content-Length", "6")],
    [("Content-Length", "5, 6")],
], ids=["twice", "list"])
def test_forward_differing_content_length_400(proxy, servers, lengths):
    hp = f"127.0.0.1:{servers.origin.port}"
    m = uuid.uuid4().hex
    c = HttpConn(proxy.http_port)
    c.send(http_request("POST", f"http://{hp}/info?m={m}", host_header=hp, headers=lengths,
                        auth=("alice", PASSWORDS["alice"])) + b"hello!")
    r = c.read_response()
    c.close()
    assert r.status == 400, r
    assert not servers.origin.find(m), "refused request reached the origin"


# ---------------------------------------------------------------------------------------------
# Content-Length, response side: an origin that answers every request with fixed bytes.
class CannedOrigin(_TcpServer):
    def __init__(self, response: bytes):
        self.response = response
        super().__init__()

    def handle(self, c):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf.split(b"\r\n\r\n", 1)[1]  # GET requests: no body
            c.sendall(self.response)


@pytest.fixture
def canned():
    made = []

    def make(response: bytes) -> CannedOrigin:
        o = CannedOrigin(response)
        made.append(o)
        return o

    yield make
    for o in made:
        o.close()


def _get(proxy, origin, path="/x"):
    hp = f"127.0.0.1:{origin.port}"
    return http_request("GET", f"http://{hp}{path}", host_header=hp,
                        auth=("alice", PASSWORDS["alice"]))


@pytest.mark.parametrize("lengths", [
    b"Content-Length: 5\r\nContent-Length: 5\r\n",
    b"Content-Length: 5, 5\r\n",
    b"content-length: 5\r\nX-Between: 1\r\nContent-Length: 5,5\r\n",
], ids=["twice", "list", "list-and-again"])
def test_response_duplicate_content_length_reaches_client_once(proxy, servers, canned, lengths):
    origin = canned(b"HTTP/1.1 200 OK\r\n" + lengths + b"\r\nhello")
    c = HttpConn(proxy.http_port)
    for _ in range(2):  # kept alive: the body ended where both sides agree
        c.send(_get(proxy, origin))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello", r
        assert r.header_all("Content-Length") == ["5"], r.headers
    c.close()


def test_response_content_length_beside_chunked_dropped(proxy, servers, canned):
    """RFC 9112 6.1: Transfer-Encoding overrides Content-Length, which a proxy removes."""
    origin = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n")
    c = HttpConn(proxy.http_port)
    for _ in range(2):
        c.send(_get(proxy, origin))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello", r
        assert r.header_all("Content-Length") == [], r.headers
    c.close()


@pytest.mark.parametrize("lengths", [
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5, 6\r\n",
    b"Content-Length: five\r\n",
], ids=["twice", "list", "malformed"])
def test_response_differing_content_length_502(proxy, servers, canned, lengths):
    """RFC 9112 6.3: the proxy discards such a response and answers 502."""
    origin = canned(b"HTTP/1.1 200 OK\r\n" + lengths + b"\r\nhello!")
    c = HttpConn(proxy.http_port)
    c.send(_get(proxy, origin))
    r = c.read_response()
    c.close()
    assert r.status == 502, r
    assert_served(proxy, servers, "after a response with differing Content-Length")
