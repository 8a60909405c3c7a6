"""3. Plain-HTTP forwarding: keep-alive across requests and origins, request and response bodies
in both framings, HEAD/204/304, hop-by-hop and Proxy-* headers stripped, origin-form targets."""
import json
import os
import uuid

import pytest

from clients import HttpConn, http_request
from harness import PASSWORDS
from servers import det_bytes

ALICE = ("alice", PASSWORDS["alice"])
HOP_HEADERS = [
    ("Connection", "keep-alive, X-Hop-Secret"),
    ("X-Hop-Secret", "must-not-reach-origin"),
    ("Keep-Alive", "timeout=30"),
    ("Proxy-Connection", "keep-alive"),
    ("TE", "trailers"),
    ("X-End-To-End", "must-reach-origin"),
]
FORBIDDEN_AT_ORIGIN = {"proxy-authorization", "proxy-connection", "keep-alive", "x-hop-secret",
                       "te", "proxy-authenticate"}


def host(proxy):
    return "127.0.0.1" if proxy.kind == "peer" else "origin.test"


def url(proxy, origin, path):
    return f"http://{host(proxy)}:{origin.port}{path}"


def get(proxy, origin, path, method="GET", headers=(), **kw):
    hh = f"{host(proxy)}:{origin.port}"
    return http_request(method, url(proxy, origin, path), host_header=hh, headers=headers,
                        auth=ALICE, **kw)


def check_origin_view(rec, path):
    names = {k.lower() for k, _ in rec["headers"]}
    leaked = names & FORBIDDEN_AT_ORIGIN
    assert not leaked, f"origin saw hop-by-hop/proxy headers {leaked}: {rec['headers']}"
    for k, v in rec["headers"]:
        if k.lower() == "connection":
            assert "x-hop-secret" not in v.lower(), rec["headers"]
    assert rec["target"] == path, f"origin saw request target {rec['target']!r}, want {path!r}"


def test_forward_single_request_headers_stripped(proxy, servers):
    m = uuid.uuid4().hex
    c = HttpConn(proxy.http_port)
    c.send(get(proxy, servers.origin, f"/info?m={m}", headers=HOP_HEADERS))
    r = c.read_response()
    assert r.status == 200, r
    rec = json.loads(r.body)
    check_origin_view(rec, f"/info?m={m}")
    hdrs = {k.lower(): v for k, v in rec["headers"]}
    assert hdrs.get("x-end-to-end") == "must-reach-origin", rec["headers"]
    assert hdrs.get("host") == f"{host(proxy)}:{servers.origin.port}", rec["headers"]
    c.close()


@pytest.mark.uringproxy_only
def test_keepalive_many_requests_one_connection(proxy, servers):
    A, B = servers.origin, servers.origin2
    c = HttpConn(proxy.http_port)
    m = uuid.uuid4().hex

    def rt(origin, path, method="GET", **kw):
        c.send(get(proxy, origin, path, method=method, headers=HOP_HEADERS, **kw))
        return c.read_response(method)

    r = rt(A, f"/info?step=1&m={m}")
    assert r.status == 200 and json.loads(r.body)["server"] == "A"
    check_origin_view(json.loads(r.body), f"/info?step=1&m={m}")

    r = rt(B, f"/info?step=2&m={m}")  # a different origin on the same client connection
    assert r.status == 200 and json.loads(r.body)["server"] == "B", r
    check_origin_view(json.loads(r.body), f"/info?step=2&m={m}")

    r = rt(A, "/bytes/100003")  # Content-Length response
    assert r.status == 200 and r.body == det_bytes(100003)

    r = rt(B, "/chunked/200000")  # chunked response
    assert r.status == 200 and r.body == det_bytes(200000)
    assert "chunked" in (r.header("Transfer-Encoding") or "").lower() or \
        r.header("Content-Length") == "200000", r

    body = os.urandom(77777)
    r = rt(A, f"/echo?step=5&m={m}", method="POST", body=body)  # Content-Length request body
    assert r.status == 200 and r.body == body

    parts = [os.urandom(n) for n in (1, 1000, 65536, 5)]
    r = rt(B, f"/echo?step=6&m={m}", method="POST", chunked_body=parts)  # chunked request body
    assert r.status == 200 and r.body == b"".join(parts), r
    rec = servers.origin2.find(f"step=6&m={m}")[0]
    assert rec["body_len"] == sum(map(len, parts))

    r = rt(A, "/bytes/5000", method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == "5000" and r.body == b""

    r = rt(A, "/status/204")
    assert r.status == 204 and r.body == b""

    r = rt(B, "/status/304")
    assert r.status == 304 and r.body == b""

    r = rt(A, f"/info?step=10&m={m}")  # the connection still works after bodiless responses
    assert r.status == 200 and json.loads(r.body)["target"] == f"/info?step=10&m={m}"

    seen = [r for r in servers.origin.find(m) + servers.origin2.find(m)]
    assert len(seen) == 5, [r["target"] for r in seen]
    c.close()


@pytest.mark.uringproxy_only
def test_keepalive_pipelined_three_requests(proxy, servers):
    """Three requests in one write (same and different origins); three responses, in order."""
    A, B = servers.origin, servers.origin2
    m = uuid.uuid4().hex
    c = HttpConn(proxy.http_port)
    c.send(get(proxy, A, f"/info?n=1&m={m}") + get(proxy, B, f"/info?n=2&m={m}")
           + get(proxy, A, f"/info?n=3&m={m}"))
    for i, name in ((1, "A"), (2, "B"), (3, "A")):
        r = c.read_response()
        assert r.status == 200, r
        rec = json.loads(r.body)
        assert (rec["server"], rec["target"]) == (name, f"/info?n={i}&m={m}"), rec
    c.close()


@pytest.mark.uringproxy_only
def test_keepalive_pipelined_post_bodies(proxy, servers):
    """Bodies framed by Content-Length and chunked, pipelined back to back."""
    A = servers.origin
    b1, b2 = os.urandom(30000), [os.urandom(5000), os.urandom(7)]
    c = HttpConn(proxy.http_port)
    c.send(get(proxy, A, "/echo", method="POST", body=b1)
           + get(proxy, A, "/echo", method="POST", chunked_body=b2)
           + get(proxy, A, "/bytes/10"))
    assert c.read_response("POST").body == b1
    assert c.read_response("POST").body == b"".join(b2)
    assert c.read_response().body == det_bytes(10)
    c.close()


def test_origin_form_for_bare_authority(proxy, servers):
    """`GET http://host:port` (no path) reaches the origin as `GET /`."""
    c = HttpConn(proxy.http_port)
    hh = f"{host(proxy)}:{servers.origin.port}"
    c.send(http_request("GET", f"http://{hh}", host_header=hh, auth=ALICE))
    r = c.read_response()
    assert r.status == 404  # the origin's answer for "/"
    last = [x for x in servers.origin.requests if x["client"]][-1]
    assert last["target"] == "/", last
    c.close()


@pytest.mark.uringproxy_only
def test_forward_close_delimited_response(proxy, servers):
    """A response without length ends with the origin's close; the client gets all of it and
    then the connection ends (the proxy cannot frame it for keep-alive unless it re-chunks)."""
    c = HttpConn(proxy.http_port)
    c.send(get(proxy, servers.origin, "/close/250000"))
    r = c.read_response()
    assert r.status == 200 and r.body == det_bytes(250000), r
    c.close()


@pytest.mark.uringproxy_only
def test_forward_expect_100_continue(proxy, servers):
    """curl-style `Expect: 100-continue`: the interim 100 (if relayed) then the final answer."""
    body = os.urandom(20000)
    c = HttpConn(proxy.http_port)
    c.send(get(proxy, servers.origin, "/echo", method="POST",
               headers=[("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
    # Either the proxy or the origin may answer 100; either way the body follows.
    c.s.settimeout(3)
    try:
        v, status, reason, hdrs = c.read_head()
    except (TimeoutError, OSError):
        status = None  # nobody said 100 within 3 s: send the body anyway, as curl does
    c.s.settimeout(20)
    c.send(body)
    if status is not None and status != 100:
        raise AssertionError(f"expected 100 Continue or nothing, got {status}")
    r = c.read_response("POST")
    assert r.status == 200 and r.body == body
    c.close()


@pytest.mark.uringproxy_only
def test_forward_ipv6_literal_origin(proxy, servers):
    if servers.origin6 is None:
        pytest.skip("no IPv6 loopback (::1) on this host")
    hp = f"[::1]:{servers.origin6.port}"
    c = HttpConn(proxy.http_port)
    c.send(http_request("GET", f"http://{hp}/info?v6=1", host_header=hp, auth=ALICE))
    r = c.read_response()
    assert r.status == 200, r
    rec = json.loads(r.body)
    assert rec["target"] == "/info?v6=1" and rec["client"][0] == "::1", rec
    c.close()


@pytest.mark.uringproxy_only
def test_forward_client_connection_close(proxy, servers):
    """`Connection: close` from the client: one response, then the proxy ends the connection."""
    c = HttpConn(proxy.http_port)
    c.send(get(proxy, servers.origin, "/bytes/1000", headers=[("Connection", "close")]))
    r = c.read_response()
    assert r.status == 200 and r.body == det_bytes(1000)
    assert c.read_to_eof() == b""
    c.close()


@pytest.mark.uringproxy_only
def test_forward_http10_client(proxy, servers):
    """An HTTP/1.0 request without keep-alive: the answer, then the connection ends."""
    hp = f"{host(proxy)}:{servers.origin.port}"
    c = HttpConn(proxy.http_port)
    req = http_request("GET", f"http://{hp}/bytes/2000", host_header=hp, auth=ALICE)
    c.send(req.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1))
    r = c.read_response()
    assert r.status == 200 and r.body == det_bytes(2000), r
    assert c.read_to_eof() == b""
    c.close()


@pytest.mark.uringproxy_only
def test_forward_error_then_next_request(proxy, servers):
    """A 502 for a refused origin, then (if the proxy kept the connection) a good request."""
    c = HttpConn(proxy.http_port)
    hp = f"127.0.0.1:{servers.closed}"
    c.send(http_request("GET", f"http://{hp}/x", host_header=hp, auth=ALICE))
    r = c.read_response()
    assert r.status == 502, r
    if (r.header("Connection") or "").lower() == "close":
        assert c.read_to_eof() == b""
        c.close()
        c = HttpConn(proxy.http_port)
    c.send(get(proxy, servers.origin, "/bytes/10"))
    r = c.read_response()
    assert r.status == 200 and r.body == det_bytes(10), r
    c.close()


@pytest.mark.uringproxy_only
def test_forward_response_hop_by_hop_stripped(proxy, servers):
    c = HttpConn(proxy.http_port)
    c.send(get(proxy, servers.origin, "/hop"))
    r = c.read_response()
    assert r.status == 200 and r.body == b"ok", r
    names = {k.lower() for k, _ in r.headers}
    assert "x-origin-hop" not in names and "keep-alive" not in names, r.headers
    assert r.header("X-Origin-E2E") == "must-reach-client", r.headers
    # and the client connection is still usable
    c.send(get(proxy, servers.origin, "/bytes/5"))
    assert c.read_response().body == det_bytes(5)
    c.close()


@pytest.mark.uringproxy_only
def test_forward_host_header_follows_uri(proxy, servers):
    """RFC 9112 3.2.2: with an absolute URI the proxy uses its authority, not a stale Host."""
    m = uuid.uuid4().hex
    c = HttpConn(proxy.http_port)
    c.send(http_request("GET", url(proxy, servers.origin, f"/info?m={m}"),
                        host_header="wrong.example", auth=ALICE))
    r = c.read_response()
    assert r.status == 200, r
    hosts = [v for k, v in json.loads(r.body)["headers"] if k.lower() == "host"]
    assert hosts == [f"{host(proxy)}:{servers.origin.port}"], hosts
    c.close()
