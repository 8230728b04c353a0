"""A throwaway PostgreSQL cluster: initdb and pg_ctl in a temporary folder, on a free loopback port.

Used by the PostgreSQL tests (the ``postgres`` fixture) and by ``benchmarks/storage_throughput.py``.
initdb refuses to run as root, so under root the server runs as the ``postgres`` system user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "harness"


def server_bin() -> Path | None:
    """The newest installed PostgreSQL server bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``start()`` a private server, ``database()`` for a fresh database URL, ``stop()`` in a finally."""

    def __init__(self, bin_dir: Path | None = None):
        self.bin = bin_dir or server_bin()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
        self.root.chmod(0o755)  # the server user must reach its data folder
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.started = False

    def _run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def start(self) -> "Cluster":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync")
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server (again, after :meth:`halt`) on the same port."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", "60", "start", timeout=90)
        self.started = True

    def halt(self) -> None:
        """Stop the server as an operator would (``pg_ctl stop -m fast``: every session is ended); the
        data stays for :meth:`resume`."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", timeout=90)
        self.started = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._run(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-Atc", statement).stdout

    def database(self) -> str:
        """A new empty database; its URL."""
        name = "h_" + uuid.uuid4().hex[:10]
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_connections(self, database: str) -> None:
        """Terminate every server connection to ``database``, as a network drop or a restart would."""
        self.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' "
                 "AND pid <> pg_backend_pid()")

    def stop(self) -> None:
        """Stop the server for good and remove its folder."""
        try:
            if self.started:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        finally:
            self.started = False
            shutil.rmtree(self.root, ignore_errors=True)


def started_cluster():
    """A pytest fixture body: a started throwaway cluster, stopped afterwards; skips the test
    where no server binaries are installed."""
    import pytest

    if server_bin() is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql); .ci/run installs them")
    cluster = Cluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()
