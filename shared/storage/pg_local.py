"""A throwaway PostgreSQL server on loopback, for tests, demos and ``cluster up`` (never for production data).

:class:`LocalPostgres` runs Debian's (or any) PostgreSQL binaries (``initdb``, ``postgres``) on a data folder
in a temporary directory: ``start()`` initialises the folder the first time and waits until the server
accepts connections; ``stop()`` shuts it down (fast: open sessions are cut, committed data is kept);
``kill()`` is a crash (SIGKILL of the whole server); ``start()`` again reuses the same port and data.
``url(db)`` is the ``postgresql://`` store URL of a database, ``create_database(name)`` makes a fresh one.

Where the binaries are: ``PG_BIN`` (a folder), else ``pg_config --bindir``, else the newest
``/usr/lib/postgresql/*/bin``, else ``initdb`` on PATH (:func:`find_pg_bin`). PostgreSQL refuses to run
as root: under root the server runs as the unprivileged user ``nobody`` (its folder is given to that user).
The server listens on 127.0.0.1 only, with trust authentication for the superuser ``postgres``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

PG_BIN_ENV = "PG_BIN"
RUN_AS_WHEN_ROOT = "nobody"
SUPERUSER = "postgres"


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (module doc), or None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: str) -> tuple[int, ...]:
        digits = Path(path).parent.name.split(".")
        return tuple(int(d) for d in digits if d.isdigit())

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL server in ``workdir`` (a new temporary folder when None) on ``port`` (a free one).

    ``settings`` are extra ``-c name=value`` server settings (e.g. ``{"fsync": "off"}`` for throwaway speed).
    """

    def __init__(self, bin_dir: Path | str | None = None, workdir: Path | str | None = None, port: int | None = None,
                 settings: dict[str, str] | None = None, preexec_fn: Any = None) -> None:
        """``preexec_fn``: run in the server's process before exec (``cluster up``: die with the parent)."""
        found = Path(bin_dir) if bin_dir is not None else find_pg_bin()
        if found is None:
            raise FileNotFoundError("PostgreSQL is not installed (no initdb/postgres found; set PG_BIN to their "
                                    "folder or install Debian's postgresql)")
        self.bin_dir = found
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="tinylarge-pg-"))
        self.owns_workdir = workdir is None
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.preexec_fn = preexec_fn
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(RUN_AS_WHEN_ROOT)
            self._user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            self._env = {**os.environ, "HOME": str(self.workdir)}
        else:
            self._env = dict(os.environ)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, dbname: str = "postgres", **params: str) -> str:
        """The store URL of database ``dbname`` on this server (``params``: query parameters, e.g. retry_s)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}" + (f"?{query}" if query else "")

    def _initdb(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._user:
            os.chown(self.workdir, self._user["user"], self._user["group"])
        out = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, env=self._env, cwd=self.workdir, timeout=120, **self._user)
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed in {self.data_dir} (exit {out.returncode}):\n{out.stderr[-2000:]}")

    def start(self, timeout_s: float = 60.0) -> LocalPostgres:
        """Start the server (initialising its folder the first time); return when it accepts connections."""
        if self.running:
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(self.workdir), "-c", "logging_collector=off"]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            if self._user:
                os.chown(self.log_path, self._user["user"], self._user["group"])
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self._env, cwd=self.workdir,
                                         start_new_session=True, preexec_fn=self.preexec_fn,
                                         **self._user)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ready():
                return self
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        self.kill()
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{tail}")

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                                 connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT: sessions cut, a checkpoint written); SIGKILL after ``timeout_s``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """A crash: SIGKILL to the server and its backends (its own process group); recovery runs at start."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.proc = None
        self._wait_port_free()

    def _wait_port_free(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (a fresh, empty one) and return its store URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def cleanup(self) -> None:
        """Stop the server and remove its folder (when this object made it)."""
        self.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
