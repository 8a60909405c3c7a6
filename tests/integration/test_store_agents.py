"""docs/configuration.md#store, agents: reverse agents kept in the PostgreSQL store's table
`agents`, so every gateway node of a fleet knows the same agents and an agent may dial any of
them. An agent added on node A with `agent add --secret-stdin` connects to node B and carries a
user routed to its group there; disabled on A, B drops its link; deleted, it is refused; `agent
kick` stays on the node it is run on; `store import` loads an agents file; a row that does not
load is skipped and reported by its id while the other agents serve; with the database down,
agent edits are refused. The agents are tests/integration/fake_agent.py processes (egress from
127.0.0.5), as in test_agents.py. Every wait is on an event, with generous bounds."""
import json
import subprocess
import time

import pytest

import pg_cluster
from ctl_helpers import run_ctl
from harness import proxy_binary
from servers import free_port, wait_until
from test_agents import AgentProcess, WhoServer, sha512, via_socks

pytestmark = [pytest.mark.uringproxy_only, pg_cluster.needs_postgres]

BOUND = 20.0  # generous: every wait ends on the event
AGENT_SOURCE = "127.0.0.5"  # fake_agent.py's egress for ids test_agents.py does not list
SECRET = "fleet-agent-secret-Qv7"


cluster = pg_cluster.cluster_fixture()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """One certificate for every gateway node (an agent trusts the fleet's CA)."""
    d = tmp_path_factory.mktemp("gw-certs")
    crt, key = d / "gw.pem", d / "gw.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "3", "-subj", "/CN=gw.test",
                    "-addext", "subjectAltName=DNS:gw.test", "-keyout", str(key), "-out",
                    str(crt)], check=True, capture_output=True)
    return crt, key


@pytest.fixture
def who():
    w = WhoServer()
    yield w
    w.close()


@pytest.fixture
def agents_made():
    made = []
    yield made
    for a in made:
        a.kill()


def node(fresh_proxy, cluster, cert, name, extra=None, start=True):
    """A gateway node of the fleet: postgres store, an agent listener, a control socket."""
    agent_port = free_port()
    over = {"store": {"type": "postgres", "dsn": cluster.dsn, "node": name},
            "control": {"socket": "ctl/control.sock"},
            "upstream": {"connect_timeout_ms": 4000, "attempts": 2}}
    p = fresh_proxy(dict(over, **(extra or {})), start=False)
    p.config["listeners"].append({"name": "agents", "protocol": "agent",
                                  "listen": f"127.0.0.1:{agent_port}",
                                  "tls": {"cert": str(cert[0]), "key": str(cert[1])}})
    p.agent_port, p.cert = agent_port, cert[0]
    p.sock = str(p.workdir / "ctl/control.sock")
    return p.start() if start else p


def agent(made, gw, id_, secret=SECRET):
    a = AgentProcess(gw, id_, secret=secret)
    made.append(a)
    return a


def ctl(p, *args, input=None):
    r = run_ctl(["--socket", p.sock] + list(args), input=input)
    assert r.rc == 0, r
    return r


def listed(p):
    """The agents node p serves: id -> row of `uringproxyctl agents --json`."""
    return {a["id"]: a for a in json.loads(ctl(p, "--json", "agents").out)["agents"]}


def connected(p, id_):
    row = listed(p).get(id_)
    return bool(row and row["connected"])


def refusals(a):
    return sum(1 for ln in a.lines if "agent refused" in ln)


def link_closed(a, since):
    """The gateway closed the agent's control link after line `since` of its output."""
    return any("gateway says error" in ln or "control link down" in ln for ln in a.lines[since:])


def read_back(p, start):
    """Node p applied another node's agent edit by reading the agents table alone."""
    return p.err.wait_for(lambda ln: "store: agents changed by another node" in ln, BOUND, start)


def no_full_read(p, start):
    return not any("read in full" in ln for ln in p.stderr_lines(start))


def test_an_agent_added_on_a_serves_on_b(fresh_proxy, cluster, cert, who, agents_made):
    a, b = (node(fresh_proxy, cluster, cert, f"t1-{x}") for x in "ab")
    mb = b.mark()
    r = ctl(a, "agent", "add", "fleet-1", "--group", "residential", "--secret-stdin",
            input=SECRET + "\n")
    assert "fleet-1" in r.out, r
    row = json.loads(cluster.query("SELECT record::text FROM agents WHERE id = 'fleet-1'"))
    assert row["group"] == "residential" and row["enabled"] is True, row
    assert row["secret"].startswith("$6$") and SECRET not in json.dumps(row)
    assert "fleet-1" in listed(a)
    assert read_back(b, mb), b.output_text(mb)
    assert no_full_read(b, mb), b.output_text(mb)
    assert "fleet-1" in listed(b)

    # The agent dials B, which never saw the edit made: it knows the agent from the store.
    ag = agent(agents_made, b, "fleet-1")
    ag.wait_ready()
    assert wait_until(lambda: connected(b, "fleet-1"), BOUND)
    assert via_socks(b, "alice.residential", who.port) == (0, AGENT_SOURCE)
    assert b.wait_access_log(lambda x: x.get("route") == "agent:fleet-1", timeout=BOUND)
    assert not connected(a, "fleet-1")  # its link is to B

    # kick stays on the node it is run on: A has no link to kick; B's is closed and comes back.
    r = ctl(a, "--json", "agent", "kick", "fleet-1")
    assert r.json()["kicked"] is False, r
    assert connected(b, "fleet-1")
    assert ctl(b, "--json", "agent", "kick", "fleet-1").json()["kicked"] is True
    ag.wait_ready(2, timeout=30)

    # Disabled on A: B closes the link (the contract: within a second; bounded generously here
    # on a shared machine), the agent is refused when it dials again, and the group has no
    # member left (group_fallback default: the user's own route, direct).
    assert wait_until(lambda: connected(b, "fleet-1"), BOUND)
    mb = b.mark()
    t0 = time.monotonic()
    ctl(a, "agent", "disable", "fleet-1")
    assert wait_until(lambda: not connected(b, "fleet-1"), BOUND), b.output_text(mb)
    print(f"agent disable on a to the link closed on b: {time.monotonic() - t0:.3f} s")
    assert read_back(b, mb) and no_full_read(b, mb), b.output_text(mb)
    assert wait_until(lambda: refusals(ag) >= 1, 30), ag.lines[-10:]
    assert via_socks(b, "alice.residential", who.port) == (0, "127.0.0.1")
    assert listed(b)["fleet-1"]["enabled"] is False

    # Enabled again (on B this time): the agent's next attempt is let in.
    ctl(b, "agent", "enable", "fleet-1")
    assert wait_until(lambda: listed(a)["fleet-1"]["enabled"], BOUND)
    assert wait_until(lambda: connected(b, "fleet-1"), 30), ag.lines[-10:]
    assert via_socks(b, "alice.residential", who.port) == (0, AGENT_SOURCE)

    # Deleted on A: gone from every node and the table, the link closed, the agent refused.
    seen, since = refusals(ag), len(ag.lines)
    t0 = time.monotonic()
    ctl(a, "agent", "del", "fleet-1")
    assert wait_until(lambda: "fleet-1" not in listed(b), BOUND)
    assert wait_until(lambda: link_closed(ag, since), BOUND), ag.lines[-10:]
    print(f"agent del on a to the link closed on b: {time.monotonic() - t0:.3f} s")
    assert "fleet-1" not in listed(a)
    assert cluster.query("SELECT count(*) FROM agents WHERE id = 'fleet-1'") == "0"
    assert wait_until(lambda: refusals(ag) > seen, 30), ag.lines[-10:]
    assert via_socks(b, "alice.residential", who.port) == (0, "127.0.0.1")

    # Edits of an agent that is not there, or twice, are refused on any node.
    r = run_ctl(["--socket", b.sock, "agent", "del", "fleet-1"])
    assert r.rc == 1 and "no agent fleet-1" in r.err, r
    ctl(a, "agent", "add", "fleet-2", "--group", "residential", "--secret-stdin",
        input=SECRET + "\n")
    assert wait_until(lambda: "fleet-2" in listed(b), BOUND)
    r = run_ctl(["--socket", b.sock, "agent", "add", "fleet-2", "--group", "residential",
                 "--secret-stdin"], input=SECRET + "\n")
    assert r.rc == 1 and "already exists" in r.err, r
    ctl(b, "agent", "del", "fleet-2")
    assert wait_until(lambda: "fleet-2" not in listed(a), BOUND)
    for p in (a, b):
        assert SECRET not in p.output_text()


def test_agents_are_read_at_start_and_a_bad_row_is_skipped_and_named(
        fresh_proxy, cluster, cert, who, agents_made):
    good = {"id": "fleet-3", "secret": sha512(SECRET), "group": "residential", "enabled": True}
    bad = {"id": "fleet-bad", "secret": "not-a-hash", "group": "residential"}
    for rec in (good, bad):
        cluster.query(f"INSERT INTO agents (id, record) VALUES ('{rec['id']}', "
                      f"'{json.dumps(rec)}'::jsonb)")
    try:
        # Start-up: the good agent serves, the bad row is reported by its id and skipped.
        b = node(fresh_proxy, cluster, cert, "t2-b")
        out = b.output_text()
        assert 'store (table agents): agent "fleet-bad"' in out and "secret" in out, out
        assert "this row is skipped" in out, out
        assert "not-a-hash" not in out
        assert set(listed(b)) == {"fleet-3"}
        ag = agent(agents_made, b, "fleet-3")
        ag.wait_ready()
        assert via_socks(b, "bob.residential", who.port) == (0, AGENT_SOURCE)

        # A row broken by hand (psql) and its NOTIFY: reported, the other agents still serve.
        m, since = b.mark(), len(ag.lines)
        cluster.query("UPDATE agents SET record = record || '{\"group\": \"a.b\"}' "
                      "WHERE id = 'fleet-3'; NOTIFY uringproxy_changes, 'psql agents'")
        assert b.err.wait_for(lambda ln: 'store (table agents): agent "fleet-3"' in ln
                              and ".group" in ln and "skipped" in ln, BOUND, m), b.output_text(m)
        assert wait_until(lambda: "fleet-3" not in listed(b), BOUND)
        assert wait_until(lambda: link_closed(ag, since), BOUND), ag.lines[-10:]
        # Mended: the agent is back.
        cluster.query("UPDATE agents SET record = record || '{\"group\": \"residential\"}' "
                      "WHERE id = 'fleet-3'; NOTIFY uringproxy_changes, 'psql agents'")
        assert wait_until(lambda: connected(b, "fleet-3"), 30), ag.lines[-10:]
        assert via_socks(b, "bob.residential", who.port) == (0, AGENT_SOURCE)
    finally:
        cluster.query("DELETE FROM agents WHERE id IN ('fleet-3', 'fleet-bad')")


def test_store_import_loads_the_agents_file(fresh_proxy, cluster, cert, tmp_path, agents_made,
                                            who):
    b = node(fresh_proxy, cluster, cert, "t3-b")
    agents = {"agents": [
        {"id": "imp-1", "secret": sha512(SECRET), "group": "residential"},
        {"id": "imp-2", "secret": sha512("other-secret-Kd3"), "group": "mobile",
         "enabled": False}]}
    f = tmp_path / "agents.json"
    f.write_text(json.dumps(agents))
    f.chmod(0o600)
    cfg = tmp_path / "uringproxy.json"
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1"}],
        "agents_file": "agents.json",
        "store": {"type": "postgres", "dsn": cluster.dsn, "node": "importer"}}))
    # A postgres node does not read agents_file: --check says so and what to do.
    r = subprocess.run([proxy_binary(), "--check", "--config", str(cfg)], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "agents_file: is not read with" in err and "store import" in err, err

    # The config's agents_file is the default; --agents names another.
    m = b.mark()
    r = run_ctl(["--config", str(cfg), "store", "import"])
    assert r.rc == 0 and r.out.strip() == "✓ imported 0 user(s), 0 upstream(s) and 2 agent(s)", r
    assert cluster.query("SELECT string_agg(id || ':' || (record->>'enabled'), ',' ORDER BY id) "
                         "FROM agents WHERE id LIKE 'imp-%'") == "imp-1:true,imp-2:false"
    # The import's NOTIFY makes every node read the store in full.
    assert b.err.wait_for(lambda ln: "read in full" in ln, BOUND, m), b.output_text(m)
    assert wait_until(lambda: set(listed(b)) >= {"imp-1", "imp-2"}, BOUND)
    assert not listed(b)["imp-2"]["enabled"]
    ag = agent(agents_made, b, "imp-1")
    ag.wait_ready()
    assert via_socks(b, "carol.residential", who.port) == (0, AGENT_SOURCE)

    other = tmp_path / "more.json"
    other.write_text(json.dumps({"agents": [{"id": "imp-3", "secret": sha512(SECRET),
                                             "group": "mobile"}]}))
    r = run_ctl(["--config", str(cfg), "store", "import", "--agents", str(other)])
    assert r.rc == 0 and "1 agent(s)" in r.out, r
    assert wait_until(lambda: "imp-3" in listed(b), BOUND)

    # A file that does not load imports nothing.
    other.write_text(json.dumps({"agents": [{"id": "imp-4", "secret": "plain", "group": "g"}]}))
    r = run_ctl(["--config", str(cfg), "store", "import", "--agents", str(other)])
    assert r.rc == 1 and "imp-4" in r.err and "secret" in r.err, r
    assert cluster.query("SELECT count(*) FROM agents WHERE id = 'imp-4'") == "0"

    # The database down: agent edits are refused with the reason, the agents known serve on.
    cluster.pause()
    try:
        r = run_ctl(["--socket", b.sock, "agent", "disable", "imp-1"])
        assert r.rc == 1 and ("the store is down" in r.err or "did not take the edit" in r.err), r
        assert via_socks(b, "carol.residential", who.port) == (0, AGENT_SOURCE)
    finally:
        cluster.run()
    assert wait_until(lambda: run_ctl(["--socket", b.sock, "agent", "disable", "imp-1"]).rc == 0,
                      BOUND)
    assert wait_until(lambda: not connected(b, "imp-1"), BOUND)
    cluster.query("DELETE FROM agents WHERE id LIKE 'imp-%'")
