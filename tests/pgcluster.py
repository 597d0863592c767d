"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` on a free loopback port.

The cluster lives in a temporary directory, listens on 127.0.0.1 only (no Unix socket outside
its own directory), trusts local connections and is stopped (``pg_ctl stop -m immediate``) and
deleted on exit. PostgreSQL refuses to run as root: under root the server runs as the
``postgres`` system user (the Debian package creates it; ``$ZKCARE_PG_OS_USER`` overrides),
which then owns the cluster directory. Needs PostgreSQL's server binaries (``initdb``, ``pg_ctl``) on ``PATH`` or in
``/usr/lib/postgresql/*/bin``; ``./zk setup`` installs the Debian package where missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


def pg_binary(name: str) -> str:
    """Path of a PostgreSQL server binary, or ``FileNotFoundError`` naming what to install."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True):
        return candidate
    raise FileNotFoundError(f"{name} not found: apt-get install postgresql (or ./zk setup)")


def _as_server_user(root: Path) -> list[str]:
    """Command prefix that runs a server binary as a non-root user (``[]`` when not root)."""
    if os.geteuid() != 0:
        return []
    user = os.environ.get("ZKCARE_PG_OS_USER", "postgres")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise FileNotFoundError(
            f"running as root needs the {user!r} system user: apt-get install postgresql"
        ) from None
    os.chown(root, entry.pw_uid, entry.pw_gid)
    return ["runuser", "-u", user, "--"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One temporary PostgreSQL cluster (``with PgCluster() as pg: pg.dsn``)."""

    def __init__(self, root: Path | None = None, user: str = "zkcare") -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="zkcare-pg-")) if root is None else root
        self.user = user
        self.port = 0
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._prefix: list[str] = []

    @property
    def dsn(self) -> str:
        """libpq connection string of the cluster's ``postgres`` database."""
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def start(self) -> PgCluster:
        """``initdb`` (trust auth, loopback only) and start; waits until it accepts connections."""
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        self._prefix = _as_server_user(self.root)
        init = subprocess.run(
            [*self._prefix, pg_binary("initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust", "-E",
             "UTF8", "--no-sync"],
            capture_output=True, env=env, text=True,
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {(init.stderr or init.stdout).strip()[-500:]}")
        for _ in range(5):  # another process may take the port between probe and bind
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=off -c max_connections=100"
            )
            proc = subprocess.run(
                [*self._prefix, pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                 "-w", "-t", "30", "start"],
                capture_output=True, env=env,
            )  # fmt: skip
            if proc.returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop the server at once and delete the cluster directory."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._prefix, pg_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate",
                 "-w", "stop"],
                capture_output=True,
            )  # fmt: skip
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
