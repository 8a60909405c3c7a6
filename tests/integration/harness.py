"""Starting and stopping the proxy under test, its config files, and the test users."""
from __future__ import annotations

import base64
import copy
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from servers import free_port

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

# Distinctive plain passwords, so a leak into the logs cannot be a coincidental substring.
PASSWORDS = {
    "alice": "alice-pw-Q7xv",   # sha512-crypt ($6$)
    "bob": "bob-pw-Z3yk",       # yescrypt ($y$)
    "carol": "carol-pw-K9wd",   # bcrypt ($2b$)
    "dave": "dave-pw-M2vf",     # sha512-crypt, disabled
    "erin": "erin:pw \u00dc8",    # colon, space and UTF-8 in the password (yescrypt)
}
WRONG_PASSWORD = "wrong-pw-T5uh"

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer")


def secrets():
    """Strings that must never show up in the proxy's output: every plain password we use and
    the Basic credentials built from them."""
    out = list(PASSWORDS.values()) + [WRONG_PASSWORD]
    for u, p in list(PASSWORDS.items()) + [("alice", WRONG_PASSWORD), ("mallory", WRONG_PASSWORD)]:
        out.append(base64.b64encode(f"{u}:{p}".encode()).decode())
    out = [x for x in out if len(x) >= 8]
    return out


def proxy_binary() -> str:
    b = os.environ.get("URINGPROXY_BIN", "build/uringproxy")
    p = Path(b)
    if not p.is_absolute():
        p = (Path.cwd() / p) if (Path.cwd() / p).exists() else (REPO / p)
    return str(p)


def peer_mode() -> bool:
    """URINGPROXY_PEER=1 runs the suite against microsocks (SOCKS5) and tinyproxy (HTTP) to
    validate the harness itself; tests that depend on uringproxy-only behaviour are skipped."""
    return os.environ.get("URINGPROXY_PEER", "") not in ("", "0")


# ---------------------------------------------------------------------------------------------
_HASHES = {}


def _crypt(method: str, pw: str) -> str:
    if method == "sha512":
        h = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw.encode(),
                           capture_output=True, check=True).stdout.decode().strip()
        assert h.startswith("$6$"), h
    elif method == "yescrypt":
        h = subprocess.run(["mkpasswd", "-m", "yescrypt", "--stdin"], input=pw.encode(),
                           capture_output=True, check=True).stdout.decode().strip()
        assert h.startswith("$y$"), h
    elif method == "bcrypt":
        h = subprocess.run(["mkpasswd", "-m", "bcrypt", "--stdin"], input=pw.encode(),
                           capture_output=True, check=True).stdout.decode().strip()
        assert h.startswith("$2b$"), h
    else:
        raise ValueError(method)
    return h


def users_doc():
    if not _HASHES:
        _HASHES["alice"] = _crypt("sha512", PASSWORDS["alice"])
        _HASHES["bob"] = _crypt("yescrypt", PASSWORDS["bob"])
        _HASHES["carol"] = _crypt("bcrypt", PASSWORDS["carol"])
        _HASHES["dave"] = _crypt("sha512", PASSWORDS["dave"])
        _HASHES["erin"] = _crypt("yescrypt", PASSWORDS["erin"])
    return {"users": [
        {"username": "alice", "password": _HASHES["alice"]},
        {"username": "bob", "password": _HASHES["bob"]},
        {"username": "carol", "password": _HASHES["carol"]},
        {"username": "dave", "password": _HASHES["dave"], "enabled": False},
        {"username": "erin", "password": _HASHES["erin"]},
    ]}


def base_config(socks_port, http_port, dns_port):
    return {
        "workers": 2,
        "listeners": [
            {"name": "socks", "protocol": "socks5", "listen": f"127.0.0.1:{socks_port}"},
            {"name": "http", "protocol": "http", "listen": f"127.0.0.1:{http_port}"},
        ],
        "auth": "required",
        "users_file": "users.json",
        "acl": {"deny_private": False},
        "dns": {"servers": [f"127.0.0.1:{dns_port}"]},
        # The suite fails logins on purpose, from 127.0.0.1, many times: no brute-force block
        # here (tests/integration/test_bruteforce.py covers it with its own config).
        "limits": {"handshake_timeout_ms": 2000, "idle_timeout_ms": 300000,
                   "auth_fail_block_after": 0},
        "upstream": {"connect_timeout_ms": 1500},
        "metrics": {"listen": ""},
        "access_log": "stderr",
        "shutdown_grace_ms": 2000,
    }


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
class _OutputCollector:
    """Drains a pipe into a list of lines (and a file), with a condition to wait on."""

    def __init__(self, pipe, path: Path):
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self.file = open(path, "w", encoding="utf-8", errors="replace")
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.file.write(line + "\n")
            self.file.flush()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()
        self.file.close()

    def wait_for(self, pred, timeout, start=0):
        """Wait until some line (index >= start) satisfies pred; returns it or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i]):
                        return self.lines[i]
                    i += 1
                if self.eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def snapshot(self, start=0):
        with self.cond:
            return list(self.lines[start:])


class ProxyProcess:
    """One uringproxy instance with its own config dir, SOCKS5 and HTTP listener ports."""

    kind = "uringproxy"

    def __init__(self, workdir: Path, dns_port: int, overrides=None, users=None, name="proxy"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.socks_port = free_port()
        self.http_port = free_port()
        self.dns_port = dns_port
        self.config = merge(base_config(self.socks_port, self.http_port, dns_port), overrides or {})
        self.users = users if users is not None else users_doc()
        self.proc = None
        self.err = None
        self.out = None
        self.returncode = None
        self.stopped_on_purpose = False
        self.extra_args = []

    @property
    def config_path(self):
        return self.workdir / "config.json"

    def write_files(self):
        self.config_path.write_text(json.dumps(self.config, indent=2))
        if self.users is not None:
            (self.workdir / "users.json").write_text(json.dumps(self.users, indent=2))

    def start(self):
        self.write_files()
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        binary = proxy_binary()
        if not Path(binary).exists():
            raise FileNotFoundError(f"{binary} not built (set URINGPROXY_BIN)")
        self.proc = subprocess.Popen([binary, "--config", str(self.config_path)] + self.extra_args,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, env=env)
        self.err = _OutputCollector(self.proc.stderr, self.workdir / "stderr.log")
        self.out = _OutputCollector(self.proc.stdout, self.workdir / "stdout.log")
        line = self.err.wait_for(lambda ln: "info: ready:" in ln, READY_TIMEOUT)
        if line is None:
            rc = self.proc.poll()
            self.kill()
            raise RuntimeError(f"{self.name}: no 'ready' line within {READY_TIMEOUT}s (rc={rc});"
                               f" stderr:\n" + "\n".join(self.err.snapshot()[-40:]))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_lines(self, start=0):
        return self.err.snapshot(start) if self.err else []

    def output_text(self, start=0):
        return "\n".join(self.stderr_lines(start) + (self.out.snapshot() if self.out else []))

    def mark(self):
        return len(self.err.lines) if self.err else 0

    def access_logs(self, start=0):
        """Parsed access-log JSON objects (lines holding a JSON object with a 'result' key)."""
        out = []
        for ln in self.stderr_lines(start):
            i = ln.find("{")
            if i < 0:
                continue
            try:
                obj = json.loads(ln[i:])
            except ValueError:
                continue
            if isinstance(obj, dict) and "result" in obj:
                out.append(obj)
        return out

    def wait_access_log(self, pred, timeout=20.0, start=0):
        def match(ln):
            i = ln.find("{")
            if i < 0:
                return False
            try:
                obj = json.loads(ln[i:])
            except ValueError:
                return False
            return isinstance(obj, dict) and "result" in obj and pred(obj)
        ln = self.err.wait_for(match, timeout, start)
        return json.loads(ln[ln.find("{"):]) if ln else None

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_table(self):
        out = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out[int(fd)] = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                pass
        return out

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        self.stopped_on_purpose = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.returncode = self.proc.returncode
        self._join_output()
        return self.returncode

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.returncode = self.proc.returncode
        self._join_output()
        return self.returncode

    def _join_output(self):
        for c in (self.err, self.out):
            if c:
                c.thread.join(10)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._join_output()

    def problems(self, start=0):
        """Sanitizer reports and leaked secrets in the output since line `start`."""
        text = self.output_text(start)
        found = [m for m in SANITIZER_MARKERS if m in text]
        leaked = [s for s in secrets() if s in text]
        msgs = []
        if found:
            idx = min(text.find(m) for m in found)
            msgs.append(f"sanitizer report in {self.name} output: {found}:\n"
                        + text[max(0, idx - 200): idx + 3000])
        if leaked:
            msgs.append(f"{self.name} logged secrets: {leaked}")
        return msgs


# ---------------------------------------------------------------------------------------------
class PeerProxy(ProxyProcess):
    """microsocks on the SOCKS5 port and tinyproxy on the HTTP port, authenticating alice only.
    Used with URINGPROXY_PEER=1 to check the harness and fixtures against known-good peers."""

    kind = "peer"

    def start(self):
        self.write_files()
        user, pw = "alice", PASSWORDS["alice"]
        conf = self.workdir / "tinyproxy.conf"
        conf.write_text(
            f"Port {self.http_port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 200\n"
            f"LogLevel Error\nDisableViaHeader Yes\nBasicAuth {user} {pw}\n"
            f"ConnectPort {0}\n".replace("ConnectPort 0\n", ""))
        self.p_socks = subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(self.socks_port),
                                         "-u", user, "-P", pw],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.err = _OutputCollector(self.proc.stderr, self.workdir / "stderr.log")
        self.out = _OutputCollector(self.proc.stdout, self.workdir / "stdout.log")
        deadline = time.monotonic() + READY_TIMEOUT
        for port in (self.socks_port, self.http_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("peer proxies did not come up")
                    time.sleep(0.05)
        return self

    def stop(self, timeout=STOP_TIMEOUT):
        self.p_socks.terminate()
        self.p_socks.wait(timeout)
        return super().stop(timeout)

    def kill(self):
        if getattr(self, "p_socks", None) and self.p_socks.poll() is None:
            self.p_socks.kill()
            self.p_socks.wait(10)
        super().kill()

    def problems(self, start=0):
        return []  # tinyproxy logs its BasicAuth config line; not ours to police
