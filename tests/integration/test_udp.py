"""SOCKS5 UDP ASSOCIATE (docs/wire.md#udp-associate): a raw RFC 1928 client and PySocks through
the proxy to a UDP echo target that answers with the source address it saw; bad datagrams
dropped and counted, nothing leaving for a target the ACL forbids; the association ending with
its control connection; through a dante upstream (egress from dante's address)."""
from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.request

import pytest
import socks

from clients import recv_exact, read_socks5_reply, socks5_addr, socks5_auth, socks5_greeting
from harness import PASSWORDS
from servers import OkHttpProxy, free_port, wait_until

WAIT = 20.0


class UdpEcho:
    """Answers each datagram with b"<ip>:<port>|" + the datagram, from where it saw it come."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.seen = []  # (source address, payload)
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data, src = self.sock.recvfrom(65536)
            except OSError:
                return
            with self.cond:
                self.seen.append((src, data))
                self.cond.notify_all()
            self.sock.sendto(f"{src[0]}:{src[1]}|".encode() + data, src)

    def wait_count(self, n, timeout=WAIT):
        with self.cond:
            return self.cond.wait_for(lambda: len(self.seen) >= n, timeout)

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def echo():
    e = UdpEcho()
    yield e
    e.close()


def udp_header(host, port, frag=0):
    return b"\x00\x00" + bytes([frag]) + socks5_addr(host, port)


def parse_header(d):
    atyp = d[3]
    if atyp == 1:
        return socket.inet_ntop(socket.AF_INET, d[4:8]), struct.unpack("!H", d[8:10])[0], d[10:]
    if atyp == 4:
        return socket.inet_ntop(socket.AF_INET6, d[4:20]), struct.unpack("!H", d[20:22])[0], d[22:]
    n = d[4]
    return d[5:5 + n].decode(), struct.unpack("!H", d[5 + n:7 + n])[0], d[7 + n:]


class Association:
    """A raw RFC 1928 UDP ASSOCIATE: the control connection and a UDP socket."""

    def __init__(self, proxy_port, user="alice", named=("0.0.0.0", 0), udp=None):
        """`user` may carry a group (alice.mix): the password is the base user's."""
        self.ctl = socket.create_connection(("127.0.0.1", proxy_port), timeout=WAIT)
        self.ctl.sendall(socks5_greeting() + socks5_auth(user, PASSWORDS[user.split(".")[0]]))
        assert recv_exact(self.ctl, 2) == b"\x05\x02"
        assert recv_exact(self.ctl, 2) == b"\x01\x00"
        self.udp = udp or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if udp is None:
            self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(WAIT)
        self.ctl.sendall(b"\x05\x03\x00" + socks5_addr(*named))
        self.rep, host, port = read_socks5_reply(self.ctl)
        self.relay = (host, port)

    def send(self, host, port, payload, frag=0):
        self.udp.sendto(udp_header(host, port, frag) + payload, self.relay)

    def recv(self):
        data, src = self.udp.recvfrom(65536)
        assert src == self.relay, f"a datagram from {src}, not the relay {self.relay}"
        return parse_header(data)

    def close(self):
        self.ctl.close()
        self.udp.close()


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT).read()
    out = {}
    for ln in text.decode().splitlines():
        if ln and not ln.startswith("#"):
            k, v = ln.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_raw_client_ipv4_and_name(proxy, echo):
    a = Association(proxy.socks_port)
    try:
        assert a.rep == 0
        # The relay is on the address the client reached the listener on.
        assert a.relay[0] == "127.0.0.1" and a.relay[1] != proxy.socks_port
        a.send("127.0.0.1", echo.port, b"hello")
        host, port, body = a.recv()
        assert (host, port) == ("127.0.0.1", echo.port)
        seen, payload = body.split(b"|", 1)
        assert payload == b"hello"
        # The target saw the proxy, not the client's socket.
        assert seen.decode() != f"127.0.0.1:{a.udp.getsockname()[1]}"
        # A name from the test DNS (*.test -> 127.0.0.1), and an empty payload.
        a.send("udp.test", echo.port, b"")
        host, port, body = a.recv()
        assert (host, port) == ("127.0.0.1", echo.port) and body.endswith(b"|")
        big = bytes(range(256)) * 200  # 51,200 bytes: one datagram, not cut
        a.send("127.0.0.1", echo.port, big)
        _, _, body = a.recv()
        assert body.split(b"|", 1)[1] == big
    finally:
        a.close()
    line = proxy.wait_access_log(lambda o: "datagrams_up" in o and o["user"] == "alice")
    assert line and line["datagrams_up"] == 3 and line["datagrams_down"] == 3, line
    assert line["bytes_up"] == 5 + len(big) and line["result"] == "ok", line


def test_pysocks_udp(proxy, echo):
    s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    s.set_proxy(socks.SOCKS5, "127.0.0.1", proxy.socks_port, username="bob",
                password=PASSWORDS["bob"])
    s.settimeout(WAIT)
    try:
        s.sendto(b"via pysocks", ("127.0.0.1", echo.port))
        data, src = s.recvfrom(65536)
        assert src == ("127.0.0.1", echo.port)
        assert data.split(b"|", 1)[1] == b"via pysocks"
    finally:
        s.close()


def test_bad_datagrams_dropped_and_counted(fresh_proxy, echo):
    mport = free_port()
    p = fresh_proxy({"metrics": {"listen": f"127.0.0.1:{mport}"},
                     "acl": {"deny": ["127.0.0.2/32"]}})
    a = Association(p.socks_port)
    try:
        assert a.rep == 0
        before = len(echo.seen)
        for bad in (b"", b"\x00\x00", b"\x00\x00\x00\x01\x7f\x00",   # shorter than the header
                    b"\x00\x00\x00\x02\x7f\x00\x00\x01\x00\x35x",       # unknown ATYP
                    b"\x00\x00\x00\x03\xc8abc"):                        # name past the end
            a.udp.sendto(bad, a.relay)
        a.send("127.0.0.1", echo.port, b"fragment", frag=1)
        a.send("127.0.0.2", echo.port, b"denied")  # the ACL's deny list
        foreign = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        foreign.bind(("127.0.0.1", 0))
        foreign.sendto(udp_header("127.0.0.1", echo.port) + b"foreign", a.relay)
        foreign.close()
        # A good datagram after all that still goes through, and is the only one the target saw.
        a.send("127.0.0.1", echo.port, b"good")
        _, _, body = a.recv()
        assert body.endswith(b"|good")
        assert [d for _, d in echo.seen[before:]] == [b"good"]

        def dropped():
            m = metrics(mport)
            return {r: m.get(f'uringproxy_udp_dropped_total{{reason="{r}"}}', 0)
                    for r in ("malformed", "frag", "acl", "foreign_source")}
        assert wait_until(lambda: dropped() == {"malformed": 5, "frag": 1, "acl": 1,
                                                "foreign_source": 1}, WAIT), dropped()
        m = metrics(mport)
        assert m['uringproxy_udp_datagrams_total{direction="up"}'] == 1
        assert m['uringproxy_udp_datagrams_total{direction="down"}'] == 1
        assert m["uringproxy_udp_associations_active"] == 1
    finally:
        a.close()
    assert wait_until(lambda: metrics(mport)["uringproxy_udp_associations_active"] == 0, WAIT)


def test_acl_denied_target_nothing_leaves(strict_proxy, echo):
    a = Association(strict_proxy.socks_port)
    try:
        assert a.rep == 0
        before = len(echo.seen)
        a.send("127.0.0.1", echo.port, b"literal")
        a.send("udp.test", echo.port, b"by name")  # resolves to 127.0.0.1: refused too
        a.ctl.close()  # ends the association: its line says nothing went up
    finally:
        a.close()
    line = strict_proxy.wait_access_log(lambda o: "datagrams_up" in o)
    assert line and line["datagrams_up"] == 0 and line["bytes_up"] == 0, line
    assert len(echo.seen) == before


def test_association_ends_with_its_control_connection(proxy, echo):
    a = Association(proxy.socks_port)
    try:
        a.send("127.0.0.1", echo.port, b"one")
        a.recv()
        start = proxy.mark()
        a.ctl.close()
        line = proxy.wait_access_log(lambda o: "datagrams_up" in o, start=start)
        assert line and line["result"] == "ok" and line["datagrams_up"] == 1, line
        # The relay socket is closed: the kernel answers port unreachable.
        a.udp.connect(a.relay)
        a.udp.send(udp_header("127.0.0.1", echo.port) + b"late")
        with pytest.raises(ConnectionRefusedError):
            a.udp.recv(100)
    finally:
        a.udp.close()


def test_only_the_named_source_is_accepted(proxy, echo):
    """The request names the client's UDP address: datagrams from elsewhere are dropped."""
    mine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mine.bind(("127.0.0.1", 0))
    a = Association(proxy.socks_port, named=mine.getsockname(), udp=mine)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    try:
        before = len(echo.seen)
        other.sendto(udp_header("127.0.0.1", echo.port) + b"other", a.relay)
        a.send("127.0.0.1", echo.port, b"mine")
        _, _, body = a.recv()
        assert body.endswith(b"|mine")
        assert [d for _, d in echo.seen[before:]] == [b"mine"]
    finally:
        other.close()
        a.close()


# ---------------------------------------------------------------------------------------------
# Through upstreams: dante relays UDP (egress from its external address); an http upstream
# cannot carry UDP and the request is refused 0x07 (fail closed, never direct).
class UdpDante:
    """danted without authentication, relaying UDP, leaving from 127.0.0.4."""

    def __init__(self, d):
        import upstreams as U

        class _D(U.Dante):
            def write_conf(self):
                self.conf.write_text(f"""\
logoutput: stderr
internal: 127.0.0.1 port = {self.port}
external: {self.external}
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
}}
socks pass {{
  from: 0.0.0.0/0 to: 0.0.0.0/0
  command: connect udpassociate udpreply
  log: connect error
}}
""")
        U.ensure_system_user()
        self.d = _D(d, external=U.DANTE_B_EXIT, auth=False)
        self.exit = U.DANTE_B_EXIT

    def start(self):
        self.d.start()
        return self

    def stop(self):
        self.d.stop()


@pytest.fixture(scope="module")
def dante(tmp_path_factory):
    import upstreams as U
    if not U.have("/usr/sbin/danted"):
        pytest.fail("danted missing (apt-get install dante-server)", pytrace=False)
    d = UdpDante(tmp_path_factory.mktemp("dante-udp")).start()
    yield d
    d.stop()


def test_through_socks5_upstream_and_refused_on_http(fresh_proxy, dante, echo):
    from harness import users_doc
    http_up = OkHttpProxy()
    users = users_doc()
    for u in users["users"]:
        if u["username"] == "alice":
            u["external_proxy_id"] = "dante-udp"
        if u["username"] == "bob":
            u["external_proxy_id"] = "http-up"
    p = fresh_proxy({"proxies_file": "external_proxy.json"}, users=users, start=False)
    p.workdir.mkdir(parents=True, exist_ok=True)
    (p.workdir / "external_proxy.json").write_text(json.dumps({"proxies": [
        {"id": "dante-udp", "type": "socks5", "address": "127.0.0.1", "port": dante.d.port,
         "enabled": True},
        {"id": "http-up", "type": "http", "address": "127.0.0.1", "port": http_up.port,
         "enabled": True, "on_failure": "reject"},
    ]}))
    (p.workdir / "external_proxy.json").chmod(0o600)
    p.start()
    a = Association(p.socks_port)
    try:
        assert a.rep == 0
        for i in range(3):
            a.send("127.0.0.1", echo.port, b"up%d" % i)
            host, port, body = a.recv()
            assert (host, port) == ("127.0.0.1", echo.port)
            seen, payload = body.split(b"|", 1)
            assert payload == b"up%d" % i
            assert seen.decode().startswith(dante.exit + ":"), seen  # left from dante
        a.send("udp.test", echo.port, b"by name")  # dante resolves it (its own resolver)
    finally:
        a.close()
    line = p.wait_access_log(lambda o: "datagrams_up" in o and o["user"] == "alice")
    assert line and line["route"] == "dante-udp" and line["datagrams_down"] >= 3, line

    b = Association(p.socks_port, user="bob")
    try:
        assert b.rep == 0x07
    finally:
        b.close()
        http_up.close()


def test_group_route_picks_a_member_that_carries_udp(fresh_proxy, dante, echo):
    """A group of one http and one socks5 member, round robin, one attempt per route: every
    association goes through the socks5 member (the http one cannot carry UDP and is not
    tried). A group whose only healthy member is http answers 0x07 under on_failure reject
    (never direct), and leaves directly only when its on_failure says direct."""
    import upstreams as U
    http_up = OkHttpProxy()
    p = fresh_proxy({"proxies_file": "external_proxy.json", "upstream": {"attempts": 1,
                     "connect_timeout_ms": 5000},
                     "groups": {"mix": {"policy": "round_robin", "on_failure": "reject"},
                                "webonly": {"on_failure": "reject"},
                                "webdirect": {"on_failure": "direct"}}}, start=False)
    p.workdir.mkdir(parents=True, exist_ok=True)
    U.write_proxies_file(p.workdir, [
        {"id": "mix-http", "type": "http", "address": "127.0.0.1", "port": http_up.port,
         "enabled": True, "group": "mix"},
        {"id": "mix-socks", "type": "socks5", "address": "127.0.0.1", "port": dante.d.port,
         "enabled": True, "group": "mix"},
        {"id": "web-http", "type": "http", "address": "127.0.0.1", "port": http_up.port,
         "enabled": True, "group": "webonly"},
        {"id": "webd-http", "type": "http", "address": "127.0.0.1", "port": http_up.port,
         "enabled": True, "group": "webdirect"},
    ])
    try:
        p.start()
        start = p.mark()
        # Round robin over both members would send every other one to the http member, which
        # with one attempt would be refused: all must go through dante.
        for i in range(6):
            a = Association(p.socks_port, user="alice.mix")
            try:
                assert a.rep == 0, (i, a.rep)
                a.send("127.0.0.1", echo.port, b"mix%d" % i)
                host, port, body = a.recv()
                seen, payload = body.split(b"|", 1)
                assert payload == b"mix%d" % i
                assert seen.decode().startswith(U.DANTE_B_EXIT + ":"), seen  # left from dante
            finally:
                a.close()
        got = wait_until(lambda: len([o for o in p.access_logs(start)
                                      if "datagrams_up" in o and o["user"] == "alice"]) >= 6,
                         WAIT)
        lines = [o for o in p.access_logs(start) if "datagrams_up" in o and o["user"] == "alice"]
        assert got, lines
        assert {o["route"] for o in lines} == {"mix-socks"}, lines

        before = len(echo.seen)
        a = Association(p.socks_port, user="alice.webonly")
        try:
            assert a.rep == 0x07, a.rep  # fail closed, not direct
        finally:
            a.close()
        line = p.wait_access_log(lambda o: o.get("user") == "alice" and
                                 o.get("result") == "unsupported", start=start)
        assert line, p.stderr_lines(start)[-10:]

        a = Association(p.socks_port, user="alice.webdirect")
        try:
            assert a.rep == 0, a.rep
            a.send("127.0.0.1", echo.port, b"direct")
            host, port, body = a.recv()
            seen, payload = body.split(b"|", 1)
            assert payload == b"direct" and seen.decode().startswith("127.0.0.1:"), body
        finally:
            a.close()
        assert len(echo.seen) == before + 1  # only the on_failure direct one reached the echo
    finally:
        http_up.close()


def test_listed_and_kicked(fresh_proxy, echo):
    """`uringproxyctl connections` lists the association; `kick` ends it (result kicked)."""
    from ctl_helpers import run_ctl
    p = fresh_proxy({"control": {"socket": "control.sock"}})
    sock = str(p.workdir / "control.sock")
    a = Association(p.socks_port, user="carol")
    try:
        a.send("127.0.0.1", echo.port, b"x")
        a.recv()
        r = run_ctl(["--socket", sock, "--json", "connections", "--user", "carol"])
        assert r.rc == 0, r
        conns = r.json()["connections"]
        assert [c["target"] for c in conns] == [f"udp:127.0.0.1:{echo.port}"], conns
        start = p.mark()
        assert run_ctl(["--socket", sock, "kick", "carol"]).rc == 0
        line = p.wait_access_log(lambda o: o.get("user") == "carol", start=start)
        assert line and line["result"] == "kicked" and line["datagrams_up"] == 1, line
        assert a.ctl.recv(1) == b""  # the control connection is closed too
    finally:
        a.close()


# ---------------------------------------------------------------------------------------------
# Faults: a flood from one client, a resolver that never answers, an upstream that refuses the
# association, the user's bandwidth cap.
def dropped_total(m):
    return sum(v for k, v in m.items() if k.startswith("uringproxy_udp_dropped_total"))


class UdpSink:
    """Counts datagrams and answers none (a flood target that adds no echo traffic)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.count = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                self.sock.recv(65536)
            except OSError:
                return
            self.count += 1

    def close(self):
        self.sock.close()


def test_flood_from_one_client_is_bounded(fresh_proxy, echo):
    """10,000 datagrams at once from one client: every one is sent on or counted as dropped,
    the proxy stays up and another client is served meanwhile."""
    mport = free_port()
    p = fresh_proxy({"metrics": {"listen": f"127.0.0.1:{mport}"}})
    sink = UdpSink()
    a = Association(p.socks_port)
    a.udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b = Association(p.socks_port, user="bob")
    try:
        assert a.rep == 0 and b.rep == 0
        dgram = udp_header("127.0.0.1", sink.port) + b"x" * 64
        t0 = time.monotonic()
        for _ in range(10000):
            a.udp.sendto(dgram, a.relay)
        b.send("127.0.0.1", echo.port, b"other client")
        _, _, body = b.recv()
        assert body.endswith(b"|other client")

        # The association still works after the flood (its datagram may meet a queue still
        # full, so it is sent until answered; the one that passes brings the count of those
        # the kernel dropped from the relay socket's full queue).
        a.udp.settimeout(1)
        tries = 0
        while time.monotonic() - t0 < WAIT:
            tries += 1
            a.send("127.0.0.1", echo.port, b"after")
            try:
                if a.recv()[2].endswith(b"|after"):
                    break
            except socket.timeout:
                pass
        else:
            pytest.fail("the association did not answer after the flood")

        def accounted():
            m = metrics(mport)
            return m['uringproxy_udp_datagrams_total{direction="up"}'] - 1 + dropped_total(m)
        # Every datagram is either sent on or counted as dropped, none vanish unseen.
        want = 10000 + tries
        assert wait_until(lambda: accounted() == want, WAIT), \
            (accounted(), want, [(k, v) for k, v in metrics(mport).items() if "udp" in k])
        assert time.monotonic() - t0 < WAIT
        assert p.alive()
    finally:
        a.close()
        b.close()
        sink.close()


class SilentDns:
    """A UDP port that takes DNS queries and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                self.sock.recv(65536)
            except OSError:
                return
            self.queries += 1

    def close(self):
        self.sock.close()


def test_resolver_that_never_answers(fresh_proxy, echo):
    """Datagrams to a name the resolver never answers for are dropped and counted (dns); the
    association goes on serving literal destinations meanwhile, and so do other clients."""
    mport = free_port()
    dns = SilentDns()
    p = fresh_proxy({"metrics": {"listen": f"127.0.0.1:{mport}"},
                     "dns": {"servers": [f"127.0.0.1:{dns.port}"]}})
    a = Association(p.socks_port)
    try:
        assert a.rep == 0
        before = len(echo.seen)
        for i in range(3):
            a.send("never.test", echo.port, b"lost%d" % i)
        assert wait_until(lambda: dns.queries >= 1, WAIT)
        a.send("127.0.0.1", echo.port, b"literal")
        _, _, body = a.recv()
        assert body.endswith(b"|literal")
        b = Association(p.socks_port, user="bob")
        try:
            b.send("127.0.0.1", echo.port, b"bob")
            _, _, body = b.recv()
            assert body.endswith(b"|bob")
        finally:
            b.close()
        dns_drops = lambda: metrics(mport).get('uringproxy_udp_dropped_total{reason="dns"}', 0)
        assert wait_until(lambda: dns_drops() == 3, WAIT), metrics(mport)
        assert [d for _, d in echo.seen[before:]] == [b"literal", b"bob"]
        a.send("127.0.0.1", echo.port, b"still")
        _, _, body = a.recv()
        assert body.endswith(b"|still")
    finally:
        a.close()
        dns.close()


class RefusingSocks5:
    """A SOCKS5 server (no auth) that answers every request with REP `rep`."""

    def __init__(self, rep):
        self.rep = rep
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            c.settimeout(WAIT)
            try:  # health probes greet and go: their EOF is fine
                head = recv_exact(c, 2)
                recv_exact(c, head[1])
                c.sendall(b"\x05\x00")
                req = recv_exact(c, 4)
                n = {1: 4, 4: 16}.get(req[3]) or recv_exact(c, 1)[0]
                recv_exact(c, n + 2)
                self.requests.append(req[1])
                c.sendall(bytes([5, self.rep, 0, 1, 0, 0, 0, 0, 0, 0]))
            except (OSError, EOFError):
                pass

    def close(self):
        self.sock.close()


def test_upstream_refuses_the_association(fresh_proxy):
    """A socks5 upstream answering UDP ASSOCIATE with an error: the client gets that code."""
    from harness import users_doc
    up = RefusingSocks5(0x02)  # not allowed by ruleset
    users = users_doc()
    for u in users["users"]:
        if u["username"] == "alice":
            u["external_proxy_id"] = "refuser"
    p = fresh_proxy({"proxies_file": "external_proxy.json"}, users=users, start=False)
    p.workdir.mkdir(parents=True, exist_ok=True)
    (p.workdir / "external_proxy.json").write_text(json.dumps({"proxies": [
        {"id": "refuser", "type": "socks5", "address": "127.0.0.1", "port": up.port,
         "enabled": True, "on_failure": "reject"}]}))
    (p.workdir / "external_proxy.json").chmod(0o600)
    p.start()
    try:
        start = p.mark()
        a = Association(p.socks_port)
        try:
            assert a.rep == 0x02
            assert a.ctl.recv(1) == b""
        finally:
            a.close()
        assert 3 in up.requests  # it was asked for an association
        line = p.wait_access_log(lambda o: o.get("user") == "alice", start=start)
        assert line and line["result"] == "denied", line
    finally:
        up.close()


def test_bandwidth_cap_drops_datagrams(fresh_proxy, echo):
    """A user over their bandwidth cap: datagrams are dropped (limit), not queued."""
    from harness import users_doc
    mport = free_port()
    users = users_doc()
    for u in users["users"]:
        if u["username"] == "alice":
            u["bandwidth_bps"] = 8000  # 1 kB/s
    p = fresh_proxy({"metrics": {"listen": f"127.0.0.1:{mport}"}}, users=users)
    a = Association(p.socks_port)
    try:
        assert a.rep == 0
        before = len(echo.seen)
        for _ in range(10):  # 50 kB at once: far over 1 kB/s (and within the socket's queue)
            a.send("127.0.0.1", echo.port, b"y" * 5000)
        def counts():
            m = metrics(mport)
            return (m['uringproxy_udp_datagrams_total{direction="up"}'],
                    m.get('uringproxy_udp_dropped_total{reason="limit"}', 0))
        assert wait_until(lambda: sum(counts()) == 10, WAIT), metrics(mport)
        up, limit = counts()
        # A datagram larger than the cap's burst still goes (whole) when there is room; the
        # rest of the burst is over the cap.
        assert 1 <= up < 5 and limit > 5, counts()
        assert len(echo.seen) - before < 5
    finally:
        a.close()
    line = p.wait_access_log(lambda o: "datagrams_up" in o and o["user"] == "alice")
    assert line and 1 <= line["datagrams_up"] < 5, line
