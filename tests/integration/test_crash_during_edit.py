"""Issue 4 (bad input and faults): `kill -9` of the daemon in the middle of a live edit.

uringproxyctl edits (`user add`, `user passwd`, `set-proxy`, `proxy add --no-test`) are fired
in the background and the daemon is SIGKILLed while it works on them; then the daemon is started
again on the same files. Every round checks:

- users.json and external_proxy.json are valid JSON and are either byte for byte the old file
  or the old content plus exactly the edit (never torn, never another change); the file the edit
  did not touch is byte for byte unchanged;
- their modes are kept (users.json is 0640 here, not the 0600 a new file gets, so a writer that
  forgot the old mode would show; external_proxy.json 0600, which the loader insists on);
- an edit that uringproxyctl reported done (exit 0) is on disk: an acknowledged edit is never lost;
- a temporary file left by the kill (`users.json.tmp.XXXXXX`: the writer makes it, fsyncs it and
  renames it over the file) means the rename did not happen, so the file must be the old one;
  nothing else appears in the directory, the leftovers do not stop the next start, and the
  restarted daemon deletes them (they hold copies of the secrets);
- the restarted daemon becomes ready, answers `status`, holds exactly the users and upstreams
  of the files (`user list`, `proxy list`), and serves: alice tunnels to the echo server over
  SOCKS5; a user whose `add` landed logs in and tunnels, one whose `add` did not is refused; after
  `user passwd` exactly the password the file holds works.

Phase 1: a small users file, up to SMALL_ROUNDS rounds mixing the four edits. Most rounds kill
after a random delay drawn from [0, hi] where hi starts at twice the measured time of that edit
and adapts (grows after a round where the edit had not landed, shrinks after one where it had),
so both outcomes show up whatever the machine's speed. Four rounds in fifteen (one per kind of
edit) instead watch the directory and kill the moment the edit's temporary file appears: a
kill in the write window.
Phase 2: users.json with HUGE_USERS users (about 4.5 MB written per edit: a wider write window,
and an edit takes the daemon long enough to kill it at any stage), `user add` rounds killed
either at the temporary file's appearance or after a delay centred on when it appeared before.

At the end there must have been `user add` rounds where the user was not added and rounds
where it was, and at least one kill that landed inside the write window. The counts, the
leftover temporary files and the durations are printed (run with -s)."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import stat
import subprocess
import time

import pytest

import harness
from clients import curl, echo_roundtrip, socks5_open
from ctl_helpers import ctl_binary, run_ctl
from harness import PASSWORDS, SANITIZER_MARKERS
from servers import closed_port

pytestmark = pytest.mark.uringproxy_only

SMALL_ROUNDS = 30
SMALL_MIN = 12            # rounds always run, however slow the machine
SMALL_BUDGET_S = 15.0     # ... and no new small round starts after this long
HUGE_USERS = 20000
HUGE_ROUNDS = 6
HUGE_MIN = 3
TOTAL_BUDGET_S = 30.0     # no new huge round starts after this long (whole test < 60 s)
CTL_WAIT_S = 20.0         # uringproxyctl must exit this soon after its daemon died
CONTROL_WAIT_S = 20.0     # restarted daemon answering `status`
USERS_MODE = 0o640
PROXIES_MODE = 0o600
SOCKET_REL = "ctl/control.sock"
TMP_RE = re.compile(r"^(users|external_proxy)\.json\.tmp\.[A-Za-z0-9]{6}$")
KNOWN = {"config.json", "users.json", "external_proxy.json", "ctl", "stderr.log", "stdout.log"}

PW_A = "pwuser-pw-A-Rk7d"
PW_B = "pwuser-pw-B-Wn4c"


def new_pw(name):
    return f"{name}-pw-Gx5t"


def norm_user(u):
    """A users.json entry as the loader sees it: defaults filled, nulls dropped."""
    d = {k: v for k, v in u.items() if v is not None}
    d.setdefault("enabled", True)
    return d


class Op:
    """One edit: its uringproxyctl arguments, stdin, the file it changes and how."""

    def __init__(self, kind, args, file, stdin=None, **kw):
        self.kind = kind
        self.args = args
        self.file = file  # "users" or "proxies"
        self.stdin = stdin
        self.__dict__.update(kw)


class Rig:
    def __init__(self, p, servers):
        self.p = p
        self.servers = servers
        self.dir = p.workdir
        self.users_path = self.dir / "users.json"
        self.proxies_path = self.dir / "external_proxy.json"
        self.socket = self.dir / SOCKET_REL
        self.dead_port = closed_port()
        self.passwords = {"alice": PASSWORDS["alice"], "pwuser": PW_A}
        self.outputs = []         # stderr of every incarnation, checked at the end
        self.secrets = [PW_A, PW_B] + list(PASSWORDS.values())
        self.rounds = []          # one dict per round
        self.last_added = None
        self.restart_times = []

    # -- files ---------------------------------------------------------------------------------
    def path(self, which):
        return self.users_path if which == "users" else self.proxies_path

    def check_modes(self, what):
        for path, mode in ((self.users_path, USERS_MODE), (self.proxies_path, PROXIES_MODE)):
            st = path.stat()
            assert stat.S_ISREG(st.st_mode), f"{what}: {path.name} is not a regular file"
            assert stat.S_IMODE(st.st_mode) == mode, \
                f"{what}: {path.name} mode {oct(stat.S_IMODE(st.st_mode))}, want {oct(mode)}"
            assert st.st_uid == os.getuid(), f"{what}: {path.name} owner changed"

    def stray(self):
        return sorted(n for n in os.listdir(self.dir) if n not in KNOWN)

    # -- daemon --------------------------------------------------------------------------------
    def ctl(self, *args, input=None, timeout=30):
        r = run_ctl(["--socket", str(self.socket)] + list(args), input=input, timeout=timeout)
        self.outputs.append(r.out + r.err)
        return r

    def wait_control(self, what):
        deadline = time.monotonic() + CONTROL_WAIT_S
        last = None
        while time.monotonic() < deadline:
            last = self.ctl("--json", "status", timeout=10)
            if last.rc == 0:
                return
            assert self.p.alive(), f"{what}: daemon died after ready:\n" + \
                "\n".join(self.p.stderr_lines()[-30:])
            time.sleep(0.05)
        raise AssertionError(f"{what}: control socket not answering within {CONTROL_WAIT_S}s: "
                             f"{last!r}")

    def start(self, what):
        t0 = time.monotonic()
        try:
            self.p.start()
        except RuntimeError as e:
            raise AssertionError(f"{what}: the daemon did not start again on the files the kill "
                                 f"left (stray: {self.stray()}): {e}") from None
        self.wait_control(what)
        self.restart_times.append(time.monotonic() - t0)
        assert not self.stray(), f"{what}: temporary files left after the restart: {self.stray()}"

    def sigkill(self):
        os.kill(self.p.pid, signal.SIGKILL)
        self.p.proc.wait(20)
        self.p._join_output()
        assert self.p.proc.returncode == -signal.SIGKILL, self.p.proc.returncode
        self.outputs.append(self.p.output_text())

    # -- serving -------------------------------------------------------------------------------
    def tunnel_ok(self, user, pw, what):
        r = socks5_open(self.p.socks_port, "127.0.0.1", self.servers.echo.port, user=user, pw=pw)
        try:
            assert r.auth_status in (None, 0) and r.rep == 0, f"{what}: {user} not served: {r}"
            echo_roundtrip(r.sock, os.urandom(1024))
        finally:
            r.sock.close()

    def refused(self, user, pw, what):
        r = socks5_open(self.p.socks_port, "127.0.0.1", self.servers.echo.port, user=user, pw=pw)
        r.sock.close()
        assert r.auth_status == 1, f"{what}: {user} with that password should be refused: {r}"

    def daemon_matches_files(self, what):
        """The running daemon holds exactly what the files say."""
        users = json.loads(self.users_path.read_text())["users"]
        r = self.ctl("--json", "user", "list")
        assert r.rc == 0, f"{what}: {r!r}"
        got = [(u["username"], u["enabled"], u["external_proxy_id"]) for u in r.json()["users"]]
        want = [(u["username"], u.get("enabled", True), u.get("external_proxy_id")) for u in users]
        assert sorted(got) == sorted(want), f"{what}: the daemon's users differ from users.json"
        proxies = json.loads(self.proxies_path.read_text())["proxies"]
        r = self.ctl("--json", "proxy", "list")
        assert r.rc == 0, f"{what}: {r!r}"
        assert sorted(x["id"] for x in r.json()["proxies"]) == sorted(x["id"] for x in proxies), \
            f"{what}: the daemon's upstreams differ from external_proxy.json"

    # -- ops -----------------------------------------------------------------------------------
    def op_add(self, name):
        pw = new_pw(name)
        self.secrets.append(pw)
        return Op("add", ["user", "add", name, "--password-stdin"], "users", pw + "\n",
                  name=name, pw=pw)

    def op_passwd(self):
        old = self.passwords["pwuser"]
        pw = PW_B if old == PW_A else PW_A
        return Op("passwd", ["user", "passwd", "pwuser", "--password-stdin"], "users", pw + "\n",
                  name="pwuser", pw=pw, old_pw=old)

    def op_set_proxy(self):
        cur = self.current_users()
        now = next(u for u in cur if u["username"] == "router").get("external_proxy_id")
        target = None if now else "px0"
        return Op("set_proxy", ["set-proxy", "router", target or "none"], "users",
                  name="router", target=target)

    def op_proxy_add(self, pid):
        return Op("proxy_add", ["proxy", "add", "--id", pid, "--type", "socks5", "--address",
                                "127.0.0.1", "--port", str(self.dead_port), "--no-test"],
                  "proxies", pid=pid)

    def current_users(self):
        return json.loads(self.users_path.read_text())["users"]

    def check_new(self, op, old_doc, doc, what):
        """The file changed: it must be the old content plus exactly this edit."""
        if op.file == "proxies":
            old, new = old_doc["proxies"], doc["proxies"]
            assert [x["id"] for x in new] == [x["id"] for x in old] + [op.pid], \
                f"{what}: external_proxy.json is neither old nor old + {op.pid}"
            assert new[-1]["port"] == self.dead_port and new[-1]["type"] == "socks5", new[-1]
            for a, b in zip(old, new):
                assert {k: v for k, v in a.items() if v is not None} == \
                    {k: v for k, v in b.items() if v is not None}, f"{what}: {a['id']} changed"
            return
        old, new = old_doc["users"], doc["users"]
        if op.kind == "add":
            assert [u["username"] for u in new] == [u["username"] for u in old] + [op.name], \
                f"{what}: users.json is neither the old set nor old + {op.name}"
            n = norm_user(new[-1])
            assert n["enabled"] is True and n["password"].startswith("$y$"), \
                f"{what}: the added entry is not what user add writes: {n.keys()}"
            pairs = zip(old, new)
        else:
            assert [u["username"] for u in new] == [u["username"] for u in old], \
                f"{what}: the user set changed"
            i = next(i for i, u in enumerate(new) if u["username"] == op.name)
            a, b = norm_user(old[i]), norm_user(new[i])
            if op.kind == "passwd":
                assert b["password"] != a["password"] and b["password"].startswith("$y$"), \
                    f"{what}: pwuser's hash is not a new yescrypt hash"
                a.pop("password"), b.pop("password")
            else:
                assert b.get("external_proxy_id") == op.target, \
                    f"{what}: router's external_proxy_id is {b.get('external_proxy_id')}"
                a.pop("external_proxy_id", None), b.pop("external_proxy_id", None)
            assert a == b, f"{what}: {op.name}'s entry changed beyond the edit"
            pairs = (x for j, x in enumerate(zip(old, new)) if j != i)
        for a, b in pairs:
            assert norm_user(a) == norm_user(b), f"{what}: entry {a['username']} changed"

    # -- one round -----------------------------------------------------------------------------
    def round(self, op, what, delay=None):
        """Fire op, kill -9 the daemon after `delay` s (or, with delay None, the moment the
        op's temporary file appears), check the files, restart, check the daemon. Returns the
        round's record."""
        target = self.path(op.file)
        other = self.path("proxies" if op.file == "users" else "users")
        before, before_other = target.read_bytes(), other.read_bytes()
        before_names = set(os.listdir(self.dir))
        tmp_prefix = target.name + ".tmp."
        pid = self.p.pid
        t0 = time.monotonic()
        ctl = subprocess.Popen([ctl_binary(), "--socket", str(self.socket), "--json"] + op.args,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        try:
            if op.stdin is not None:
                ctl.stdin.write(op.stdin.encode())
            ctl.stdin.close()
            ctl.stdin = None  # so communicate() does not flush it
            seen_tmp_at = None
            if delay is not None:
                time.sleep(delay)
            else:
                deadline = t0 + 30.0
                while time.monotonic() < deadline and ctl.poll() is None:
                    if any(n.startswith(tmp_prefix) and n not in before_names
                           for n in os.listdir(self.dir)):
                        seen_tmp_at = time.monotonic() - t0
                        break
            t_kill = time.monotonic() - t0
            self.sigkill()
            out, err = ctl.communicate(timeout=CTL_WAIT_S)
        finally:
            if ctl.poll() is None:
                ctl.kill()
                ctl.wait(10)
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        self.outputs.append(out + err)
        rec = {"what": what, "kind": op.kind, "file": op.file, "delay": delay, "t_kill": t_kill,
               "seen_tmp_at": seen_tmp_at, "ctl_rc": ctl.returncode,
               "reached": "cannot connect" not in err}

        # The files the kill left.
        after = target.read_bytes()
        assert other.read_bytes() == before_other, f"{what}: {other.name} changed by a {op.kind}"
        for path in (self.users_path, self.proxies_path):
            try:
                json.loads(path.read_bytes())
            except ValueError as e:
                raise AssertionError(f"{what}: {path.name} is not valid JSON after kill -9: {e}")
        self.check_modes(what)
        landed = after != before
        if landed:
            self.check_new(op, json.loads(before), json.loads(after), what)
        rec["landed"] = landed
        assert ctl.returncode in (0, 2), \
            f"{what}: uringproxyctl exit {ctl.returncode} (refused?): {out} {err}"
        if ctl.returncode == 0:
            assert landed, \
                f"{what}: uringproxyctl reported the {op.kind} done but it is not on disk"
        new_names = set(os.listdir(self.dir)) - before_names
        bad = [n for n in new_names if not TMP_RE.match(n)]
        assert not bad, f"{what}: unexpected files after kill -9: {bad}"
        tmps = [n for n in new_names if n.startswith(tmp_prefix)]
        assert not [n for n in new_names if not n.startswith(tmp_prefix)], \
            f"{what}: a temporary file of the other file appeared: {new_names}"
        assert len(tmps) <= 1, f"{what}: one edit left {len(tmps)} temporary files: {tmps}"
        rec["mid_write"] = bool(tmps)
        if tmps:
            # The temporary file is still there: the rename never happened.
            assert not landed, f"{what}: {tmps[0]} left behind although {target.name} changed"
            t = self.dir / tmps[0]
            data = t.read_bytes()
            rec["tmp_size"] = len(data)
            try:
                json.loads(data)
                rec["tmp_complete"] = True
            except ValueError:
                rec["tmp_complete"] = False
            rec["tmp_mode"] = stat.S_IMODE(t.stat().st_mode)

        # Bookkeeping of what must work now.
        if op.kind == "add" and landed:
            self.passwords[op.name] = op.pw
            self.last_added = op.name
        if op.kind == "passwd" and landed:
            self.passwords["pwuser"] = op.pw

        # Start again on these files; it must load them and serve.
        self.start(what)
        self.tunnel_ok("alice", self.passwords["alice"], what)
        if op.kind == "add":
            if landed:
                self.tunnel_ok(op.name, op.pw, what)
            else:
                self.refused(op.name, op.pw, what)
        if op.kind == "passwd":
            self.tunnel_ok("pwuser", self.passwords["pwuser"], what)
            if landed:
                self.refused("pwuser", op.old_pw, what)
        self.daemon_matches_files(what)
        self.rounds.append(rec)
        return rec


class Adaptive:
    """Kill delays for one kind of edit: uniform in [lo*c, hi*c]; c grows after a round the
    edit had not landed and shrinks after one where it had, so both outcomes keep coming."""

    CAP = 3.0  # seconds: a round's delay stays bounded however slow the warm-up was

    def __init__(self, c, lo, hi):
        self.c, self.lo, self.hi = min(c, self.CAP), lo, hi

    def next(self, rng):
        return rng.uniform(self.lo * self.c, self.hi * self.c)

    def feed(self, landed):
        self.c = min(self.c * (0.85 if landed else 1.18), self.CAP)


def how(delay):
    return "kill at temp file" if delay is None else f"kill after {delay * 1000:.1f} ms"


# ---------------------------------------------------------------------------------------------
def test_kill9_during_live_edits(fresh_proxy, servers):
    t_start = time.monotonic()
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)

    doc = harness.users_doc()
    doc["users"].append({"username": "pwuser", "password": harness._crypt("sha512", PW_A)})
    doc["users"].append({"username": "router", "password": harness._crypt("sha512", PW_B)})
    p = fresh_proxy({"proxies_file": "external_proxy.json", "control": {"socket": SOCKET_REL},
                     "shutdown_grace_ms": 1000}, doc, start=False)
    rig = Rig(p, servers)
    p.write_files()
    p.users = None  # restarts must not rewrite users.json: they run on what the kill left
    os.chmod(rig.users_path, USERS_MODE)
    rig.proxies_path.write_text(json.dumps({"proxies": [
        {"id": "px0", "name": "P0", "type": "socks5", "address": "127.0.0.1",
         "port": rig.dead_port}]}, indent=2))
    os.chmod(rig.proxies_path, PROXIES_MODE)
    rig.start("first start")

    # Warm-up: each edit once, uninterrupted, to time it (and to let the daemon write the files
    # in its own layout).
    timing = {}
    for kind, op in (("add", rig.op_add("warm0")), ("passwd", rig.op_passwd()),
                     ("set_proxy", rig.op_set_proxy()), ("proxy_add", rig.op_proxy_add("pxw"))):
        t0 = time.monotonic()
        r = rig.ctl(*op.args, input=op.stdin)
        timing[kind] = time.monotonic() - t0
        assert r.rc == 0, r
        if kind == "passwd":
            rig.passwords["pwuser"] = op.pw
    rig.passwords["warm0"] = new_pw("warm0")
    rig.check_modes("warm-up")
    rig.tunnel_ok("warm0", rig.passwords["warm0"], "warm-up")
    adapt = {k: Adaptive(2 * v, 0.0, 1.0) for k, v in timing.items()}

    # Phase 1: small files, the four edits.
    # (kind, kill at the temp file's appearance?): each kind gets a triggered round per cycle.
    cycle = [("add", False), ("add", False), ("passwd", False), ("add", True),
             ("set_proxy", False), ("add", False), ("proxy_add", True), ("add", False),
             ("passwd", False), ("set_proxy", True), ("add", False), ("add", False),
             ("proxy_add", False), ("add", False), ("passwd", True)]
    for r in range(SMALL_ROUNDS):
        if r >= SMALL_MIN and time.monotonic() - t_start > SMALL_BUDGET_S:
            break
        kind, triggered = cycle[r % len(cycle)]
        if kind == "add":
            op = rig.op_add(f"crash{r:03d}")
        elif kind == "passwd":
            op = rig.op_passwd()
        elif kind == "set_proxy":
            op = rig.op_set_proxy()
        else:
            op = rig.op_proxy_add(f"pxc{r:03d}")
        delay = None if triggered else adapt[kind].next(rng)
        rec = rig.round(op, f"small round {r} ({kind}, {how(delay)})", delay)
        rec["phase"] = "small"
        if not triggered:
            adapt[kind].feed(rec["landed"])
    small_rounds = len(rig.rounds)
    t_small = time.monotonic() - t_start

    # Phase 2: a huge users.json (the daemon is stopped while it is put in place, atomically).
    rig.sigkill()
    cur = json.loads(rig.users_path.read_text())
    filler_hash = harness._crypt("sha512", os.urandom(9).hex())
    cur["users"] += [{"username": f"filler{i:05d}", "password": filler_hash}
                     for i in range(HUGE_USERS)]
    tmp = rig.dir / "users.json.building"
    tmp.write_text(json.dumps(cur))
    os.chmod(tmp, USERS_MODE)
    os.replace(tmp, rig.users_path)
    rig.start("start with the huge users.json")
    huge_size = rig.users_path.stat().st_size
    huge = None  # Adaptive, centred on when the temp file appeared in a triggered round
    for r in range(HUGE_ROUNDS):
        if r >= HUGE_MIN and time.monotonic() - t_start > TOTAL_BUDGET_S:
            break
        op = rig.op_add(f"hcrash{r:03d}")
        triggered = huge is None or r % 2 == 0
        delay = None if triggered else huge.next(rng)
        rec = rig.round(op, f"huge round {r} (add, {how(delay)})", delay)
        rec["phase"] = "huge"
        if triggered and rec["seen_tmp_at"] is not None and huge is None:
            huge = Adaptive(rec["seen_tmp_at"], 0.7, 1.3)
        elif not triggered:
            huge.feed(rec["landed"])

    # The checker passes, and a real client works through the daemon.
    chk = subprocess.run([harness.proxy_binary(), "--check", "--config", str(p.config_path)],
                         capture_output=True, timeout=60)
    assert chk.returncode == 0, f"uringproxy --check: {chk.stderr.decode()}"
    user = rig.last_added or "warm0"
    c = curl(["--socks5", f"{user}:{rig.passwords[user]}@127.0.0.1:{p.socks_port}", "-f",
              f"http://127.0.0.1:{servers.origin.port}/bytes/4096"], timeout=30)
    assert c.returncode == 0 and len(c.stdout) == 4096, f"curl as {user}: {c.stderr.decode()}"
    leftovers = rig.stray()
    rc = p.stop()
    assert rc == 0, f"final SIGTERM: exit {rc}"
    rig.outputs.append(p.output_text())

    # Nothing secret or sanitizer-flagged in any incarnation's output.
    text = "\n".join(rig.outputs)
    assert not [m for m in SANITIZER_MARKERS if m in text], "sanitizer report in the output"
    leaked = [s for s in rig.secrets if s in text]
    assert not leaked, f"passwords in the daemon's or uringproxyctl's output: {leaked}"

    # The report, and the split the adaptive delays were for.
    adds = [x for x in rig.rounds if x["kind"] == "add"]
    mid = [x for x in rig.rounds if x["mid_write"]]
    elapsed = time.monotonic() - t_start
    print(f"\nkill -9 during live edits (delay seed {seed}): {len(rig.rounds)} rounds "
          f"({small_rounds} small, {len(rig.rounds) - small_rounds} with {HUGE_USERS} users, "
          f"{huge_size} bytes) in {elapsed:.1f} s (small phase {t_small:.1f} s)")
    print("  warm-up edit times ms: "
          + ", ".join(f"{k} {v * 1000:.0f}" for k, v in timing.items()))
    for phase in ("small", "huge"):
        for kind in ("add", "passwd", "set_proxy", "proxy_add"):
            xs = [x for x in rig.rounds if x["phase"] == phase and x["kind"] == kind]
            if not xs:
                continue
            print(f"  {phase:5} {kind:9}: {len(xs):2} rounds, "
                  f"landed {sum(x['landed'] for x in xs):2}"
                  f" (acked {sum(x['ctl_rc'] == 0 for x in xs)}), not landed "
                  f"{sum(not x['landed'] for x in xs):2} (ctl never reached the daemon "
                  f"{sum(not x['reached'] for x in xs)}), killed mid-write "
                  f"{sum(x['mid_write'] for x in xs)}")
    for x in mid:
        print(f"  mid-write: {x['what']}: temp seen at {x['seen_tmp_at']}, "
              f"killed at {x['t_kill'] * 1000:.1f} ms, temp {x['tmp_size']} bytes "
              f"{'complete JSON' if x['tmp_complete'] else 'TORN'}, mode {oct(x['tmp_mode'])}")
    print(f"  restart to `status` answering: max {max(rig.restart_times) * 1000:.0f} ms, "
          f"mean {sum(rig.restart_times) / len(rig.restart_times) * 1000:.0f} ms")
    print(f"  temporary files left at the end: {len(leftovers)}: {leftovers[:6]}"
          f"{' ...' if len(leftovers) > 6 else ''}")

    assert [x for x in adds if x["landed"]], "no kill landed after a user add completed"
    assert [x for x in adds if not x["landed"] and x["reached"]], \
        "no kill landed before a user add the daemon had received was written"
    assert mid, "no kill landed inside the write window (temporary file present)"
