"""systemd/pantau.service: the service contract, its hardening (exposure <= 2.0), a clean
`systemd-analyze verify`, and pantau run as a real process the way the unit starts it:
notify socket, watchdog, $STATE_DIRECTORY, umask 077, no new privileges and no
writable+executable memory (MemoryDenyWriteExecute=). Under strace, every system call and
socket family pantau uses (check, run, reload, stop) is one the unit's SystemCallFilter= and
RestrictAddressFamilies= allow.

systemd-analyze comes with the Debian package `systemd`, strace with `strace`
(.ci/apt-packages). Where one is missing its tests are skipped with a loud reason, except in
CI (CI=true), where a missing binary is a failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fakes.feeds import rss, rss_item

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "pantau.service"
OPERATIONS = ROOT / "docs" / "operations.md"
EXAMPLE_CONFIG = ROOT / "config" / "cilegon.yaml"
EXEC_START = "/opt/pantau/venv/bin/pantau run -c /etc/pantau/pantau.yaml"
MAX_EXPOSURE = 2.0

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_MDWE = 65
_PR_MDWE_REFUSE_EXEC_GAIN = 1


def in_ci() -> bool:
    """CI sets CI=true: there a missing binary fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(binary: str) -> str:
    """The path of ``binary``; skip loudly outside CI when it is missing, fail in CI."""
    path = shutil.which(binary)
    if path:
        return path
    package = {"systemd-analyze": "systemd"}.get(binary, binary)
    message = (f"`{binary}` IS NOT INSTALLED: this test did not run. Install the Debian package "
               f"`{package}` (listed in .ci/apt-packages).")
    if in_ci():
        pytest.fail(message + " In CI it must be installed.")
    print(f"\nWARNING: {message}", file=sys.stderr)
    pytest.skip(message)


def directives(text: str, section: str = "Service") -> dict[str, list[str]]:
    """``Key -> [values]`` of one section of a unit file (keys may repeat; comments dropped)."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        if current == section and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return directives(UNIT.read_text(encoding="utf-8"))


def _one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key)
    assert values, f"pantau.service sets no {key}="
    return values[-1]


# -- the unit file -------------------------------------------------------------------------


def test_unit_is_a_notify_service_with_watchdog_and_reload(service):
    """Type=notify (READY=1 from pantau), a watchdog, SIGHUP reload, the documented ExecStart."""
    kind = _one(service, "Type")
    assert kind in {"notify", "notify-reload"}
    if kind == "notify":
        assert _one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert _one(service, "NotifyAccess") == "main"
    assert _one(service, "ExecStart") == EXEC_START
    assert EXEC_START in OPERATIONS.read_text(encoding="utf-8")
    watchdog = _one(service, "WatchdogSec")
    assert re.fullmatch(r"[1-9][0-9]*s", watchdog)
    assert 10 <= int(watchdog[:-1]) <= 300
    assert _one(service, "Restart") == "on-failure"
    assert {"74", "78"} <= set(_one(service, "RestartPreventExitStatus").split())


def test_unit_runs_as_a_dynamic_user_with_state_config_and_credentials(service):
    """DynamicUser, StateDirectory=pantau ($STATE_DIRECTORY/pantau.db), config dir, credentials."""
    assert _one(service, "DynamicUser") == "yes"
    assert _one(service, "StateDirectory") == "pantau"
    assert _one(service, "ConfigurationDirectory") == "pantau"
    assert _one(service, "UMask") == "0077"
    loaded = {value.split(":", 1)[0] for key in ("LoadCredential", "LoadCredentialEncrypted")
              for value in service.get(key, [])}
    # Every credential the example config refers to (even commented out) is loaded.
    names = re.findall(r"\{credential:\s*([a-z0-9][a-z0-9_.-]*)\}", EXAMPLE_CONFIG.read_text())
    wanted = set(names)
    assert wanted and wanted <= loaded


def test_unit_hardening_keeps_what_python_needs(service):
    """The hardening directives of the issue are set, with the address families pantau uses."""
    expected = {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "AmbientCapabilities": "", "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes",
        "RestrictNamespaces": "yes", "SystemCallArchitectures": "native",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "RestrictRealtime": "yes",
    }
    for key, value in expected.items():
        assert _one(service, key) == value, key
    # AF_UNIX is needed for the notify socket; AF_INET/AF_INET6 for the checks and /metrics.
    assert set(_one(service, "RestrictAddressFamilies").split()) == {
        "AF_INET", "AF_INET6", "AF_UNIX"}
    assert service["SystemCallFilter"][0] == "@system-service"


def test_systemd_analyze_security_exposure_is_at_most_2():
    """`systemd-analyze security --offline=true` rates the unit 2.0 or lower."""
    analyze = require("systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for pantau\.service:\s*([0-9.]+)", output)
    assert match, output
    assert float(match[1]) <= MAX_EXPOSURE, output


def _verify(analyze: str, unit_text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    directory.mkdir()
    path = directory / "pantau.service"
    path.write_text(unit_text)
    return subprocess.run([analyze, "verify", "--no-pager", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_systemd_analyze_verify_is_clean(tmp_path):
    """`systemd-analyze verify` reports nothing (with ExecStart pointed at an existing binary).

    verify insists that ExecStart's program exists, and /opt/pantau is not installed where
    the tests run; the copy checked here runs the test's Python instead, all else unchanged.
    A copy with an unknown key shows that verify's complaints would be caught.
    """
    analyze = require("systemd-analyze")
    text = UNIT.read_text(encoding="utf-8")
    assert "/opt/pantau/venv/bin/pantau" in text
    local = text.replace("/opt/pantau/venv/bin/pantau", f"{sys.executable} -m monitor.cli")
    result = _verify(analyze, local, tmp_path / "unit")
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )
    broken = _verify(analyze, local.replace("[Service]\n", "[Service]\nFrobnicate=yes\n"),
                     tmp_path / "broken")
    assert "Frobnicate" in broken.stdout + broken.stderr


# -- pantau as the unit runs it --------------------------------------------------------------


#: libc, loaded before any fork: the child of Popen only calls into it (see _sandbox).
_LIBC = ctypes.CDLL(None, use_errno=True)


def _sandbox() -> None:
    """In the child before exec: no new privileges, no W+X memory, umask 077 (as the unit)."""
    libc = _LIBC
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        os._exit(120)
    if libc.prctl(_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        os._exit(121)
    os.umask(0o077)


def _mdwe_supported() -> bool:
    """Whether this kernel has PR_SET_MDWE (Linux 6.3+), checked in a throwaway child."""
    probe = "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0)"
    return subprocess.run([sys.executable, "-c", probe], check=False, timeout=30).returncode == 0


class _Notifications:
    """systemd's side of the notify socket: a thread reads every datagram into a queue.

    Reading all the time matters: a datagram socket queues only a few messages
    (net.unix.max_dgram_qlen, often 10) and then the sender blocks, as it would if systemd
    stopped reading.
    """

    def __init__(self, path: Path) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(self._sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, prefix: str, timeout: float = 10.0) -> str:
        """The next message starting with ``prefix`` (earlier ones are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {prefix} from pantau; got {self.seen}"
            try:
                message = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(message)
            if message.startswith(prefix):
                return message

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()


@contextlib.contextmanager
def _notify_socket(path: Path) -> Iterator[_Notifications]:
    notifications = _Notifications(path)
    try:
        yield notifications
    finally:
        notifications.close()


def _listen_port(log: Path) -> int:
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "pantau started":
                return int(event["listen"].rsplit(":", 1)[1])
    raise AssertionError(f"no 'pantau started' line:\n{log.read_text()}")


def test_pantau_runs_as_the_unit_starts_it(tmp_path):
    """Under W^X and no-new-privs: READY=1 once serving, watchdog pings, reload, clean stop."""
    if not _mdwe_supported():
        message = "THIS KERNEL HAS NO PR_SET_MDWE (Linux < 6.3): MemoryDenyWriteExecute untested"
        print(f"\nWARNING: {message}", file=sys.stderr)
        pytest.skip(message)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    config = tmp_path / "pantau.yaml"
    config.write_text(  # no `state:`: it defaults to $STATE_DIRECTORY/pantau.db
        "listen: 127.0.0.1:0\nexpect: [rss]\n"
        "agencies:\n  - id: dinsos\n    name: Dinas Sosial Kota Cilegon\n    group: dinas\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"PANTAU_CONFIG", "WATCHDOG_PID"}}
    env.update(NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="400000",
               STATE_DIRECTORY=str(state_dir), CREDENTIALS_DIRECTORY=str(tmp_path / "creds"),
               PANTAU_PLUGINS="rss")
    log = tmp_path / "pantau.log"
    with _notify_socket(tmp_path / "notify") as notify, log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "-c", str(config)], cwd=ROOT, env=env,
            stdout=out, stderr=out, preexec_fn=_sandbox)  # the sandbox is the point of the test
        try:
            notify.wait_for("READY=1")
            # READY=1 means serving: /healthz answers at once.
            port = _listen_port(log)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                assert resp.status == 200
            notify.wait_for("WATCHDOG=1")
            proc.send_signal(signal.SIGHUP)
            reload_message = notify.wait_for("RELOADING=1")
            notify.wait_for("READY=1")
            proc.send_signal(signal.SIGTERM)
            notify.wait_for("STOPPING=1")
            assert proc.wait(timeout=10) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert notify.seen[0] == "READY=1"
    assert re.search(r"MONOTONIC_USEC=\d+", reload_message)
    database = state_dir / "pantau.db"
    assert database.exists(), log.read_text()
    assert stat.S_IMODE(database.stat().st_mode) & 0o077 == 0  # UMask=0077
    assert "config reloaded" in log.read_text()


# -- the system calls pantau makes --------------------------------------------------------

#: System calls seen under test that the service never makes: SQLite gives a new journal the
#: database's owner with fchown() only when running as root; the service runs as its own user.
_ROOT_ONLY = {"fchown"}
_SYSCALL = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]")
_SOCKET = re.compile(r"\bsocket\((AF_\w+)")


def _syscall_sets(analyze: str) -> dict[str, list[str]]:
    """``@group -> members`` as this systemd defines them (`systemd-analyze syscall-filter`)."""
    out = subprocess.run([analyze, "syscall-filter", "--no-pager"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif (item := line.strip()) and not item.startswith("#") and current is not None:
            current.append(item)
    return groups


def _expand(groups: dict[str, list[str]], names: list[str]) -> set[str]:
    out: set[str] = set()
    for name in names:
        if name.startswith("@"):
            assert name in groups, f"this systemd does not know {name}"
            out |= _expand(groups, groups[name])
        else:
            out.add(name)
    return out


def _allowed_syscalls(analyze: str, filters: list[str]) -> set[str]:
    """What the unit's SystemCallFilter= lines allow: the allow list minus every ~deny list."""
    groups = _syscall_sets(analyze)
    allowed: set[str] = set()
    for line in filters:
        if line.startswith("~"):
            allowed -= _expand(groups, line[1:].split())
        else:
            allowed |= _expand(groups, line.split())
    return allowed


class _Feed(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _feed_server() -> Iterator[str]:
    """A loopback HTTP server (in a thread) serving one RSS feed; yields the feed's URL."""
    _Feed.body = rss([rss_item("Rapat koordinasi", pub_date="Rab, 09 Okt 2024 09:30:00 WIB")])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _traced_pid(strace_pid: int) -> int:
    """The pid of the program strace started (its only child)."""
    children = Path(f"/proc/{strace_pid}/task/{strace_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _checks_done(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r'^pantau_check_duration_seconds_count\{platform="rss"\} (\S+)$', text,
                      re.M)
    return float(match[1]) if match else 0.0


def _require_ptrace(strace: str) -> None:
    """Skip loudly where this container forbids ptrace (strace cannot trace anything)."""
    probe = subprocess.run([strace, "-f", "-o", os.devnull, sys.executable, "-c", "pass"],
                           capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        message = f"STRACE CANNOT TRACE HERE (ptrace not permitted?): {probe.stderr.strip()}"
        print(f"\nWARNING: {message}", file=sys.stderr)
        pytest.skip(message)


def test_every_system_call_pantau_makes_is_allowed_by_the_unit(tmp_path, service):
    """Traced through check, run (a scheduled check), reload and stop: nothing the unit blocks."""
    analyze = require("systemd-analyze")
    strace = require("strace")
    _require_ptrace(strace)
    allowed = _allowed_syscalls(analyze, service["SystemCallFilter"])
    families = set(_one(service, "RestrictAddressFamilies").split())
    trace = [strace, "-f", "-qq", "-s", "0", "-e", "signal=none", "-o"]
    env = {k: v for k, v in os.environ.items() if k not in {"PANTAU_CONFIG", "WATCHDOG_PID"}}
    env.update(PANTAU_PLUGINS="rss", NOTIFY_SOCKET=str(tmp_path / "notify"),
               WATCHDOG_USEC="400000")
    config = tmp_path / "pantau.yaml"
    log = tmp_path / "pantau.log"
    with _feed_server() as url, _notify_socket(tmp_path / "notify") as notify:
        config.write_text(
            f"listen: 127.0.0.1:0\nstate: {tmp_path / 'pantau.db'}\n"
            # 2 s: the daemon checks again 2 s after `pantau check`, inside the trace.
            "check: {interval: 2s, timeout: 5s}\nexpect: [rss]\n"
            "agencies:\n  - id: dinsos\n    name: Dinas Sosial\n    group: dinas\n"
            f"    accounts:\n      rss: {url}\n"
        )
        command = [sys.executable, "-m", "monitor.cli"]
        checked = subprocess.run([*trace, str(tmp_path / "check.trace"), *command, "check",
                                  "-c", str(config), "--format", "json"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=60, check=False)
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)[0]["ok"] is True
        with log.open("wb") as out:
            proc = subprocess.Popen([*trace, str(tmp_path / "run.trace"), *command, "run",
                                     "-c", str(config)], cwd=ROOT, env=env, stdout=out,
                                    stderr=out)
            try:
                notify.wait_for("READY=1", timeout=60)  # strace slows the start down
                pid = _traced_pid(proc.pid)
                port = _listen_port(log)
                # Due 2 s after `pantau check`; but when strace on a busy machine makes the
                # start take longer than that, the account is overdue at start and its check is
                # spread over the first minute (Scheduler.plan, SPREAD = 60 s): wait that long.
                deadline = time.monotonic() + 90
                while _checks_done(port) < 1:
                    assert time.monotonic() < deadline, "the daemon made no check"
                    time.sleep(0.2)
                os.kill(pid, signal.SIGHUP)
                notify.wait_for("RELOADING=1")
                notify.wait_for("READY=1")
                os.kill(pid, signal.SIGTERM)
                assert proc.wait(timeout=20) == 0, log.read_text()
            finally:
                if proc.poll() is None:  # kill pantau too: it would outlive strace
                    with contextlib.suppress(OSError, AssertionError, ValueError):
                        os.kill(_traced_pid(proc.pid), signal.SIGKILL)
                    proc.kill()
                    proc.wait()
    used: set[str] = set()
    opened: set[str] = set()
    for name in ("check.trace", "run.trace"):
        text = (tmp_path / name).read_text(errors="replace")
        used |= {m[1] for line in text.splitlines() if (m := _SYSCALL.match(line))}
        opened |= set(_SOCKET.findall(text))
    assert {"epoll_wait", "connect", "accept4", "fdatasync"} <= used  # the trace is real
    assert used - allowed <= _ROOT_ONLY, f"blocked by SystemCallFilter=: {used - allowed}"
    assert opened and opened <= families, f"blocked by RestrictAddressFamilies=: {opened}"


def test_notify_never_blocks_when_the_reader_queue_is_full(tmp_path):
    """sd_notify drops a message instead of blocking the event loop on a full socket."""
    import socket
    import threading

    from monitor.sdnotify import notify

    address = str(tmp_path / "full.sock")
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(address)
    sent: list[bool] = []
    sender = threading.Thread(
        target=lambda: sent.extend(notify("WATCHDOG=1", {"NOTIFY_SOCKET": address})
                                   for _ in range(500)),
        daemon=True,
    )
    try:
        sender.start()
        sender.join(timeout=5)
        assert not sender.is_alive(), "notify() blocked on a full socket"
        assert sent[0] is True and sent[-1] is False  # the queue filled up; later ones dropped
    finally:
        reader.close()
