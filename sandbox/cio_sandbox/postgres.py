"""A throwaway PostgreSQL server on loopback, for tests of the mapper's `cache_url`.

`initdb` into a temporary directory and `postgres` on a free 127.0.0.1 port (its unix socket in the
same directory, so nothing system-wide is touched). PostgreSQL refuses to run as root, so as root
the server runs as the `postgres` OS user (or `nobody`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: A throwaway server's; tests check it never reaches a log line.
PASSWORD = "s3cret-pg-Pa55"
USER = "ev"
DATABASE = "ev"


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres (Debian keeps them off PATH)."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if versions:
        return Path(versions[0]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def new_database(url: str, prefix: str = "test") -> str:
    """A new, empty database on the server of `url` (a test's rows of its own): its URL."""
    parts = urlsplit(url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    bin_dir = find_bin_dir()
    createdb = str(bin_dir / "createdb") if bin_dir else "createdb"
    subprocess.run(
        [createdb, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
         "-U", parts.username or USER, name],
        env={**os.environ, "PGPASSWORD": parts.password or ""},
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return urlunsplit(parts._replace(path=f"/{name}"))


class PostgresServer:
    """One server: `start()` (or `with`), `url`, `stop()`; `stop()` mid-test simulates a lost
    database."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ev-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    pwd.getpwnam(name)
                    self.user = name
                    break
            entry = pwd.getpwnam(self.user or "nobody")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()[-800:]}")
        return done

    def start(self) -> PostgresServer:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user:
            shutil.chown(pwfile, self.user)
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, "--auth=scram-sha-256",
            f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "30",
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off",
            "start",
        )  # fmt: skip
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE,
                  env={**os.environ, "PGPASSWORD": PASSWORD})  # fmt: skip
        self.wait_ready()
        return self

    def __enter__(self) -> PostgresServer:
        """Started and listening; stopped and its files removed on leaving the block."""
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *_: object) -> None:
        self.cleanup()

    def stop(self) -> None:
        """Stop the server (fast: open sessions are cut, as when a database goes away)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL did not listen on port {self.port}")
            time.sleep(0.05)
