"""uringload's TLS client (tools/load: --tls, --tls-resume, vless://), which bench/compare's TLS
rows rest on, driven against uringproxy's TLS listeners: HTTPS proxy, SOCKS5 over TLS and VLESS
move bytes both ways without errors on TLS 1.3 with the one cipher the client offers;
--tls-resume resumes the handshakes; without the flags the tool's output is what it was."""
import json
import os
import subprocess
import uuid

import pytest

from harness import proxy_binary
from limits_helpers import password, sha512_hash
from servers import free_port
from test_tls_listeners import make_pair

pytestmark = pytest.mark.uringproxy_only

UID = str(uuid.uuid4())


def uringload_binary():
    """build/tools/uringload beside the uringproxy under test (every meson build makes it)."""
    return os.path.join(os.path.dirname(proxy_binary()), "tools", "uringload")


@pytest.fixture(scope="module")
def lproxy(instances, tmp_path_factory):
    if not os.access(uringload_binary(), os.X_OK):
        pytest.skip(f"{uringload_binary()} not built (ninja -C build tools/uringload)")
    d = tmp_path_factory.mktemp("uringload-pki")
    cert, key = make_pair(d, "server")
    doc = {"users": [{"username": "lena", "password": sha512_hash(password("lena")),
                      "uuid": UID}]}
    p = instances.make("uringload-tls", {"access_log": "off"}, doc)
    tls = {"cert": str(cert), "key": str(key)}
    p.ports = {}
    for name, proto in (("https", "http"), ("socks-tls", "socks5"), ("vless", "vless")):
        p.ports[name] = free_port()
        p.config["listeners"].append({"name": name, "protocol": proto,
                                      "listen": f"127.0.0.1:{p.ports[name]}", "tls": tls})
    p.start()
    yield p
    p.stop()


def url(p, name):
    cred = f"lena:{password('lena')}@"
    return {"https": f"http://{cred}127.0.0.1:{p.ports['https']}",
            "socks-tls": f"socks5://{cred}127.0.0.1:{p.ports['socks-tls']}",
            "vless": f"vless://{UID}@127.0.0.1:{p.ports['vless']}",
            "socks": f"socks5://{cred}127.0.0.1:{p.socks_port}"}[name]


def uringload(*args):
    """Runs uringload with its own target; returns (exit code, the JSON result or None, output)."""
    argv = [uringload_binary(), *args, "--target-listen", f"127.0.0.1:{free_port()}", "--json",
            "--timeout", "10"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    res = next((json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")), None)
    return r.returncode, res, r.stdout + r.stderr


@pytest.mark.parametrize("name", ["https", "socks-tls", "vless"])
@pytest.mark.parametrize("direction", ["--upload", "--download"])
def test_bulk_over_tls(lproxy, name, direction):
    rc, res, out = uringload("bulk", direction, "--streams", "2", "--bytes", "8M",
                             "--duration", "30", "--proxy", url(lproxy, name), "--tls")
    assert rc == 0, out
    assert res["errors"] == 0, out
    assert res["streams_ok"] == 2 and res["bytes"] >= 8 << 20, out
    assert res["tls_handshakes"] == 2 and res["tls_resumed"] == 0, out
    assert (res["tls_version"], res["tls_cipher"]) == ("TLSv1.3", "TLS_AES_128_GCM_SHA256"), out


@pytest.mark.parametrize("name", ["https", "socks-tls", "vless"])
def test_cps_full_and_resumed_handshakes(lproxy, name):
    rc, full, out = uringload("cps", "--concurrency", "4", "--duration", "1", "--proxy",
                              url(lproxy, name), "--tls")
    assert rc == 0, out
    assert full["connections"] > 0 and full["errors"] == 0, out
    assert full["tls_handshakes"] >= full["connections"] and full["tls_resumed"] == 0, out
    rc, res, out = uringload("cps", "--concurrency", "4", "--duration", "1", "--proxy",
                             url(lproxy, name), "--tls", "--tls-resume")
    assert rc == 0, out
    assert res["connections"] > 0 and res["errors"] == 0, out
    # Sessions are fetched before the clock starts, so every measured handshake can resume.
    assert res["tls_resumed"] == res["tls_handshakes"] > 0, out


def test_without_tls_flags_the_output_is_unchanged(lproxy):
    rc, res, out = uringload("bulk", "--bytes", "4M", "--duration", "30", "--proxy",
                             url(lproxy, "socks"))
    assert rc == 0 and res["errors"] == 0, out
    assert not [k for k in res if k.startswith("tls_") or k == "err_tls"], out


@pytest.mark.parametrize("args,why", [
    (["cps", "--tls-resume"], "--tls-resume needs --tls"),
    (["latency", "--tls"], "--tls and vless:// are for bulk and cps"),
    (["bulk", "--proxy", "vless://not-a-uuid@127.0.0.1:1"], "wants a uuid"),
])
def test_refused_options(args, why):
    if not os.access(uringload_binary(), os.X_OK):
        pytest.skip(f"{uringload_binary()} not built")
    rc, _, out = uringload(*args)
    assert rc == 2 and why in out, out
