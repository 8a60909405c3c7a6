"""uringproxyctl under test: finding the binary, running it, and a daemon fixture whose config
names a control socket in its tmp dir, an external proxies file and users with e-mail and uuid."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import harness
from harness import PASSWORDS, REPO

CTL_TIMEOUT = 60.0  # bound for one uringproxyctl run (proxy add/test probe inside the daemon)

# Plain passwords the tests hand to uringproxyctl; they must never appear in any output.
NEW_PASSWORDS = {
    "frank": "frank-pw-Jq4r",
    "grace": "grace-pw-Lm8s",
    "heidi": "heidi-pw-Xc2n",
    "bob2": "bob-new-pw-Vt6e",
}
REC_USER = "recuser"
REC_PASSWORD = "recorder-pw-Bz5h"
ALICE_UUID = "a1b2c3d4-e5f6-7890-1234-567890abcdef"


def ctl_secrets():
    return list(NEW_PASSWORDS.values()) + [REC_PASSWORD] + list(PASSWORDS.values())


def ctl_binary() -> str:
    """URINGPROXYCTL_BIN, else next to URINGPROXY_BIN (its build dir's src/ctl/), else
    build/src/ctl/uringproxyctl, else build/uringproxyctl."""
    env = os.environ.get("URINGPROXYCTL_BIN")
    if env:
        p = Path(env)
        return str(p if p.is_absolute() else (Path.cwd() / p if (Path.cwd() / p).exists()
                                             else REPO / p))
    daemon = Path(harness.proxy_binary())
    for cand in (daemon.parent / "src" / "ctl" / "uringproxyctl", daemon.parent / "uringproxyctl",
                 REPO / "build" / "src" / "ctl" / "uringproxyctl", REPO / "build" / "uringproxyctl"):
        if cand.exists():
            return str(cand)
    return str(REPO / "build" / "src" / "ctl" / "uringproxyctl")


class Result:
    def __init__(self, args, cp: subprocess.CompletedProcess):
        self.args = args
        self.rc = cp.returncode
        self.out = cp.stdout.decode("utf-8", "replace")
        self.err = cp.stderr.decode("utf-8", "replace")

    def json(self):
        lines = self.out.splitlines()
        assert len(lines) == 1, f"--json printed {len(lines)} lines: {self.out!r}"
        obj = json.loads(lines[0])
        assert isinstance(obj, dict) and isinstance(obj.get("ok"), bool), obj
        return obj

    def lines(self):
        return self.out.splitlines()

    def __repr__(self):
        return f"uringproxyctl {' '.join(self.args)} -> rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


OUTPUTS = []  # every Result of the session, checked for secrets


def run_ctl(args, input=None, cwd=None, timeout=CTL_TIMEOUT) -> Result:
    """Runs uringproxyctl; stdin is `input` (str) or /dev/null (never a terminal)."""
    binary = ctl_binary()
    if not Path(binary).exists():
        raise FileNotFoundError(f"{binary} not built (set URINGPROXYCTL_BIN)")
    cp = subprocess.run([binary] + list(args), input=input.encode() if input is not None else None,
                        stdin=None if input is not None else subprocess.DEVNULL,
                        capture_output=True, timeout=timeout, cwd=cwd)
    r = Result(list(args), cp)
    OUTPUTS.append(r)
    return r


def leaked_secrets(text: str):
    return [s for s in ctl_secrets() if s in text]


# ---------------------------------------------------------------------------------------------
def ctl_users():
    doc = harness.users_doc()
    for u in doc["users"]:
        if u["username"] == "alice":
            u["email"] = "alice@vless.local"
            u["uuid"] = ALICE_UUID
            u["external_proxy_id"] = "rec"
    return doc


def ctl_proxies(rec_port):
    return [{"id": "rec", "name": "Recorder", "type": "socks5", "address": "127.0.0.1",
             "port": rec_port, "username": REC_USER, "password": REC_PASSWORD}]


SOCKET_REL = "ctl/control.sock"


class CtlDaemon:
    """A started uringproxy (harness.ProxyProcess) plus helpers to drive it with uringproxyctl."""

    def __init__(self, proc, socket_path: Path):
        self.p = proc
        self.socket = socket_path

    @property
    def workdir(self) -> Path:
        return self.p.workdir

    @property
    def users_path(self) -> Path:
        return self.p.workdir / "users.json"

    @property
    def proxies_path(self) -> Path:
        return self.p.workdir / "external_proxy.json"

    def ctl(self, *args, input=None, cwd=None, timeout=CTL_TIMEOUT) -> Result:
        return run_ctl(["--socket", str(self.socket)] + list(args), input=input, cwd=cwd,
                       timeout=timeout)

    def ctl_json(self, *args, input=None) -> tuple:
        r = self.ctl("--json", *args, input=input)
        return r, r.json()

    def users_file(self):
        return json.loads(self.users_path.read_text())

    def proxies_file(self):
        return json.loads(self.proxies_path.read_text())


def start_ctl_daemon(fresh_proxy, rec_port, control=True, users=None, extra=None) -> CtlDaemon:
    over = {"proxies_file": "external_proxy.json"}
    if control:
        over["control"] = {"socket": SOCKET_REL}
    over.update(extra or {})
    p = fresh_proxy(over, users if users is not None else ctl_users(), start=False)
    p.workdir.mkdir(parents=True, exist_ok=True)
    pf = p.workdir / "external_proxy.json"
    pf.write_text(json.dumps({"proxies": ctl_proxies(rec_port)}, indent=2))
    os.chmod(pf, 0o600)
    p.write_files()
    os.chmod(p.workdir / "users.json", 0o640)  # an operator's choice the edits must keep
    p.start()
    sock = p.workdir / (SOCKET_REL if control else "run/control.sock")
    d = CtlDaemon(p, sock)
    wait_control(d)
    return d


def wait_control(d: CtlDaemon, timeout=20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if d.socket.exists() and stat.S_ISSOCK(d.socket.stat().st_mode):
            last = d.ctl("--json", "status", timeout=10)
            if last.rc == 0:
                return
        if not d.p.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"control socket {d.socket} not answering status within {timeout}s "
                       f"(daemon alive={d.p.alive()}); last: {last!r}\nstderr tail:\n"
                       + "\n".join(d.p.stderr_lines()[-30:]))


def wait_for(pred, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)
