"""A throwaway PostgreSQL cluster for store tests: initdb into a temporary directory as the
`postgres` OS user (initdb refuses root), listening only on a Unix socket in that directory
on a port of its own, trust authentication, stopped by its postmaster's PID. The store tests
share `needs_postgres` (their skip mark) and `cluster_fixture` (their module-scoped `cluster`:
started, migrated with `uringproxy --migrate` and filled with the harness's users)."""
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness import proxy_binary, users_doc
from servers import free_port

BOUND = 60.0


def pg_bin(name):
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


def available():
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return pg_bin("initdb") is not None and pg_bin("postgres") is not None


needs_postgres = pytest.mark.skipif(not available(),
                                    reason="needs Debian's postgresql (scripts/lib/deps.sh)")


def as_postgres(cmd, **kw):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, capture_output=True, timeout=BOUND, stdin=subprocess.DEVNULL, **kw)


class Cluster:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="uringproxy-pg-"))
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc = None

    @property
    def dsn(self):
        return f"host={self.dir} port={self.port} dbname=postgres user=postgres"

    def start(self):
        r = as_postgres([pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                         "--auth=trust", "--no-sync"])
        assert r.returncode == 0, r.stderr.decode()
        return self.run()

    def run(self):
        cmd = [pg_bin("postgres"), "-D", str(self.data), "-k", str(self.dir), "-p",
               str(self.port), "-c", "listen_addresses=", "-c", "fsync=off"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        self.log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            if self.psql("SELECT 1").returncode == 0:
                return self
            assert self.proc.poll() is None, (self.dir / "server.log").read_text()
            time.sleep(0.1)
        raise RuntimeError("postgres did not start:\n" + (self.dir / "server.log").read_text())

    def psql(self, sql):
        return as_postgres([pg_bin("psql"), "-h", str(self.dir), "-p", str(self.port), "-U",
                            "postgres", "-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-c",
                            sql])

    def query(self, sql):
        r = self.psql(sql)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode().strip()

    def pause(self):
        """Stops the server (fast shutdown), keeping its data for run()."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)
        self.proc.wait(BOUND)
        self.log.close()

    def stop(self):
        pid_file = self.data / "postmaster.pid"
        if self.proc and self.proc.poll() is None and pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGINT)  # fast shutdown
        if self.proc:
            try:
                self.proc.wait(BOUND)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def migrate(c, tmp_dir):
    """Creates the schema in cluster c with `uringproxy --migrate` (config written in tmp_dir)."""
    cfg = tmp_dir / "uringproxy.json"
    cfg.write_text(json.dumps({
        "listeners": [{"name": "s", "protocol": "socks5", "listen": "127.0.0.1:1"}],
        "store": {"type": "postgres", "dsn": c.dsn, "node": "migrator"}}))
    r = subprocess.run([proxy_binary(), "--config", str(cfg), "--migrate"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr.decode()


def cluster_fixture(migrated=True, user_fields=None):
    """A module-scoped `cluster` fixture for a test module (`cluster = cluster_fixture(...)`):
    a Cluster started for the module and stopped after it. migrated: the schema is created and
    the harness's users (users_doc()) are inserted, with user_fields[username] merged into
    that user's record (e.g. a quota); otherwise the cluster is left empty."""
    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        c = Cluster().start()
        try:
            if migrated:
                migrate(c, tmp_path_factory.mktemp("migrate"))
                for u in users_doc()["users"]:
                    u = dict(u, **(user_fields or {}).get(u["username"], {}))
                    c.query(f"INSERT INTO users (username, record) VALUES ('{u['username']}', "
                            f"'{json.dumps(u)}'::jsonb)")
            yield c
        finally:
            c.stop()
    return cluster
