"""The reference docs (docs/configuration.md, docs/wire.md) against the code and the running
binary: the documented examples pass --check, every field the loaders read is documented, the
access-log keys and metric names the daemon emits are exactly the documented ones, and the docs
link only to files (and headings) inside the repository."""
import json
import os
import re
import subprocess
import urllib.request

import pytest

from clients import echo_roundtrip, socks5_open
from harness import PASSWORDS, REPO, proxy_binary, users_doc
from servers import free_port

pytestmark = pytest.mark.uringproxy_only

DOCS = REPO / "docs"


def read(rel):
    return (REPO / rel).read_text(encoding="utf-8")


def json_blocks(markdown):
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", markdown, re.S)
            if b.lstrip().startswith("{")]


def table_names(markdown, heading, index=0):
    """The backticked names in the first column of the index-th table under `heading`."""
    section = markdown.split("\n" + heading + "\n", 1)[1]
    tables, cur = [], []
    for ln in section.split("\n"):
        if ln.startswith("#"):
            break
        if ln.startswith("|"):
            cur.append(ln)
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    names = []
    for row in tables[index][2:]:  # after the header and the separator
        names += re.findall(r"`([^`]+)`", row.split("|")[1])
    return names


def slug(heading):
    """GitHub's anchor for a heading."""
    s = heading.strip().lower().replace("`", "")
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_configuration_examples_pass_check(tmp_path):
    blocks = json_blocks(read("docs/configuration.md"))
    main = next(b for b in blocks if "listeners" in b)
    users = next(b for b in blocks if "users" in b)
    proxies = next(b for b in blocks if "proxies" in b)
    real = [u["password"] for u in users_doc()["users"]]
    for i, u in enumerate(users["users"]):
        assert "..." in u["password"], "the example hashes are placeholders"
        u["password"] = real[i % len(real)]
    (tmp_path / "certs").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(tmp_path / "certs" / "ca.key"),
                    "-out", str(tmp_path / "certs" / "ca.pem")], check=True, capture_output=True)
    (tmp_path / "users.json").write_text(json.dumps(users))
    ep = tmp_path / "external_proxy.json"
    ep.write_text(json.dumps(proxies))
    os.chmod(ep, 0o600)
    cfg = tmp_path / "uringproxy.json"
    cfg.write_text(json.dumps(main))
    r = subprocess.run([proxy_binary(), "--check", "--config", str(cfg)], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, out
    assert "error" not in out, out


def loader_fields():
    """Every JSON key the loaders ask for."""
    keys = set()
    for f in ("config_loader.cpp", "users_loader.cpp", "proxies_loader.cpp", "agents_loader.cpp",
              "on_failure.cpp"):
        src = (REPO / "src" / "config" / f).read_text()
        # r.get_string("name", ...), get_path(r, "cert", ...), read_on_failure(r, "on_failure")
        keys |= set(re.findall(r"\b(?:get_\w+|find|has|read_on_failure|get_path|ignore)"
                               r"\(\s*(?:\w+,\s*)?\"([a-z_]+)\"", src))
        keys |= set(re.findall(r'\{"([a-z_]+)", &out\.', src))  # "user" / "group"
        for names in re.findall(r"kHarmless\w+\[\] = \{([^}]*)\}", src):
            keys |= set(re.findall(r'"([a-z_]+)"', names))
    return keys


def test_every_loader_field_is_documented():
    doc = read("docs/configuration.md")
    fields = loader_fields()
    for must in ("workers", "listeners", "deny_private", "username", "external_proxy_id",
                 "server_name", "on_failure", "user", "group", "created_at"):
        assert must in fields, f"the field scan missed {must}: {sorted(fields)}"
    missing = sorted(k for k in fields if f"`{k}`" not in doc and f".{k}`" not in doc)
    assert not missing, f"fields the loaders read but docs/configuration.md does not name: {missing}"


@pytest.fixture
def metered(fresh_proxy):
    port = free_port()
    p = fresh_proxy({"metrics": {"listen": f"127.0.0.1:{port}"}})
    p.metrics_port = port
    return p


def test_access_log_and_metrics_match_wire_doc(metered, servers):
    doc = read("docs/wire.md")
    start = metered.mark()
    r = socks5_open(metered.socks_port, "127.0.0.1", servers.echo.port, pw=PASSWORDS["alice"])
    assert (r.auth_status, r.rep) == (0, 0), r
    echo_roundtrip(r.sock, b"x" * 1000)
    r.sock.close()
    line = metered.wait_access_log(lambda o: o.get("user") == "alice", start=start)
    assert line is not None, "no access-log line for alice's tunnel"
    assert set(line) == set(table_names(doc, "### Access log")), line
    results = table_names(doc, "### Access log", index=1)
    assert line["result"] in results, (line["result"], results)
    src = (REPO / "src" / "core" / "connection.cpp").read_text()
    coded = set(re.findall(r'case Result::\w+: return "(\w+)";', src))
    assert coded == set(results), f"code {sorted(coded)} vs docs {sorted(results)}"

    with urllib.request.urlopen(f"http://127.0.0.1:{metered.metrics_port}/metrics", timeout=10) as m:
        text = m.read().decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    documented = set(table_names(doc, "### Metrics"))
    documented = {n for n in documented if n.startswith("uringproxy_")}
    assert exported == documented, (f"exported only: {sorted(exported - documented)}; "
                                    f"documented only: {sorted(documented - exported)}")


def test_docs_link_inside_the_repo():
    files = [REPO / "README.md", REPO / "tests" / "integration" / "README.md"]
    files += sorted(DOCS.glob("*.md"))
    problems = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        if "shared/DESIGN" in text or re.search(r"DESIGN \d", text):
            problems.append(f"{f.relative_to(REPO)} points at DESIGN.md, outside the repo")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (f.parent / path).resolve() if path else f
            if not dest.exists():
                problems.append(f"{f.relative_to(REPO)}: link to missing {target}")
                continue
            if anchor and dest.suffix == ".md":
                heads = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)
                if anchor not in {slug(h) for h in heads}:
                    problems.append(f"{f.relative_to(REPO)}: no heading for #{anchor} in {path}")
    assert not problems, "\n".join(problems)


def test_code_cites_docs_inside_the_repo():
    """Comments and messages cite the repo's own docs, never DESIGN.md sections outside it."""
    problems = []
    for top in ("src", "include", "tests", "tools", "bench", "config", "scripts"):
        for f in sorted((REPO / top).rglob("*")):
            if not f.is_file() or f.name == "test_docs.py" or "corpus" in f.parts:
                continue
            try:
                text = f.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if "shared/DESIGN" in text or re.search(r"DESIGN \d", text):
                problems.append(str(f.relative_to(REPO)))
    assert not problems, f"cite docs/*.md instead of DESIGN sections: {problems}"
