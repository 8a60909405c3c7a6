"""DESIGN 2: SIGHUP reloads config and users; a running tunnel survives a reload."""
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
