"""A real PostgreSQL (Debian's `postgresql` package) on loopback for the tests: started once, a fresh database
per test.

initdb refuses to run as root, so as root the server runs as the `postgres` system user (`runuser`), in a
temporary directory it owns. Durability is switched off (fsync, full-page writes, synchronous commit): a test
database never has to survive a crash. Loopback connections are trusted (no password).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess  # nosec B404
import tempfile
import uuid
from pathlib import Path

import psycopg

from tests.serving import free_port

START_SECONDS = 120


def binaries() -> Path:
    """The newest installed PostgreSQL's bin directory (scripts/test.sh installs the package when none is)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/test.sh (it installs Debian's postgresql)")
    return Path(found[-1]).parent


class Postgres:
    """One server in a temporary directory; `database()` makes an empty database and returns its URL."""

    def __init__(self) -> None:
        self.bin = binaries()
        self.root = Path(tempfile.mkdtemp(prefix="cloudpilot-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=START_SECONDS)  # nosec B603
        if done.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr or done.stdout}\n{log[-3000:]}")

    def start(self) -> Postgres:
        self.root.chmod(0o755)
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        self.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off "
            "-c synchronous_commit=off -c max_connections=400 -c shared_buffers=32MB"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", str(START_SECONDS), "start")  # fmt: skip
        return self

    def url(self, database: str = "postgres", password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database (from template0: nothing another test left); returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        try:
            if self.port:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
