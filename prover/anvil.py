"""Run a local anvil node on a free loopback port (started and stopped by the tooling)."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from prover.exceptions import ChainUnavailable
from prover.toolchain import anvil_binary

#: anvil's default dev account #0 (mnemonic "test test ... junk"): a well-known, public key.
DEV_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Anvil:
    """An anvil process; use as a context manager."""

    chain_id: int = 31337
    block_time: float | None = None
    code_size_limit: int | None = None
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The JSON-RPC URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Anvil:
        """Start anvil and wait until it answers JSON-RPC."""
        binary: Path = anvil_binary()
        self.port = self.port or free_port()
        args = [
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--silent",
            *self.extra_args,
        ]
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        if self.code_size_limit:
            args += ["--code-size-limit", str(self.code_size_limit)]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode()[-500:]
                raise ChainUnavailable(
                    self.url, f"anvil exited with {self._proc.returncode}: {err}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ChainUnavailable(self.url, f"anvil did not start within {timeout} s")

    def stop(self) -> None:
        """Stop anvil (SIGTERM, then SIGKILL)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def __enter__(self) -> Anvil:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
