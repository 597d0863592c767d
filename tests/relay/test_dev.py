"""A newcomer's path: ``python -m prover.relay dev``, the ``keys`` commands, the example job and
the README's relay quick start, each run the way a user would (subprocesses, a fresh shell)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from pydantic import SecretStr

from prover.anvil import free_port
from prover.models.breast_cancer import load_dataset
from prover.relay.__main__ import cli
from prover.relay.dev import DevFolder, job_file
from prover.relay.keys import load_account
from prover.relay.schemas import JobRequest
from prover.relay.settings import KeyConfig, load_settings

from .support import MODEL, ROOT, wait_until

#: First start on a bare checkout builds the circuit bundle and compiles the contracts.
READY_TIMEOUT_S = 420
PAID_TIMEOUT_S = 180
EXAMPLE = ROOT / "examples" / "job.json"


class DevServer:
    """``python -m prover.relay dev`` in its own process group; stdout collected line by line."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.lines: list[str] = []
        self._stderr = log.open("ab")
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        """What it printed so far, stdout then the tail of stderr."""
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.log.read_text()[-3000:]

    def wait_for(self, prefix: str, timeout: float = READY_TIMEOUT_S) -> str:
        """The first stdout line starting with ``prefix``."""

        def found() -> str | None:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                raise AssertionError(f"dev exited ({self.proc.returncode}):\n{self.output()}")
            return None

        return str(wait_until(found, timeout, f"dev to print {prefix!r}", poll=0.2))

    def ctrl_c(self, timeout: float = 60) -> int:
        """What a terminal's Ctrl-C does: SIGINT to the whole process group; the exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        """Whatever is left of the group goes."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self._stderr.close()


@contextmanager
def dev_server(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[DevServer]:
    server = DevServer(command, log, env)
    try:
        yield server
    finally:
        server.kill()


def dev_command(port: int, folder: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prover.relay",
        "dev",
        "--port",
        str(port),
        "--dir",
        str(folder),
    ]


def anvil_port(server: DevServer) -> int:
    line = server.wait_for("  chain     http://")
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert match, line
    return int(match.group(1))


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_final(url: str, job_id: str, token_file: Path) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}

    def final() -> dict[str, object] | None:
        body: dict[str, object] = requests.get(
            f"{url}/v1/jobs/{job_id}", timeout=10, headers=headers
        ).json()
        return body if body["state"] in ("paid", "denied", "failed") else None

    return dict(wait_until(final, PAID_TIMEOUT_S, f"job {job_id} to be final", poll=0.25))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def relay_env(folder: Path) -> dict[str, str]:
    """The secrets a ``serve``/``check`` of the dev folder's relay.toml needs, as its header says."""
    passphrase = (folder / "keystore.passphrase").read_text().rstrip("\n")
    return {
        **os.environ,
        "ZKCARE_RELAY_HOSPITAL_KEY__PASSPHRASE": passphrase,
        "ZKCARE_RELAY_SUBMITTER_KEY__PASSPHRASE": passphrase,
        "ZKCARE_RELAY_NULLIFIER_SECRET": (folder / "nullifier.secret").read_text().strip(),
    }


# ------------------------------------------------------------------------------ dev command


@pytest.mark.slow
def test_dev_serves_the_example_claim_until_paid_and_resumes(tmp_path: Path) -> None:
    port, folder = free_port(), tmp_path / "dev"
    url = f"http://127.0.0.1:{port}"
    with dev_server(dev_command(port, folder), tmp_path / "dev-1.log") as server:
        started = time.monotonic()
        submit_line = server.wait_for("submit:")
        ready_s = time.monotonic() - started
        assert server.lines[-2:] == [f"relay URL: {url}", submit_line], server.output()
        command = submit_line.removeprefix("submit:").strip()
        token_file = folder / "client.token"
        assert command == (
            f".venv/bin/python -m prover.relay submit examples/job.json --url {url} "
            f"--token-file {token_file}"
        )
        token_line = next(line for line in server.lines if line.startswith("  client    dev "))
        assert token_file.read_text().strip() in token_line  # the dev relay prints its token
        chain_port = anvil_port(server)

        submitted = subprocess.run(
            shlex.split(command), cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert submitted.returncode == 0, submitted.stderr
        accepted = json.loads(submitted.stdout)
        assert accepted["created"] is True
        job = wait_final(url, accepted["job_id"], token_file)
        anonymous = requests.get(f"{url}/v1/jobs/{accepted['job_id']}", timeout=10)
        assert anonymous.status_code == 401  # the dev relay is authenticated too
        assert job["state"] == "paid", job
        assert job["amount_wei"] == str(10**16) and job["policy_id"] == 1

        for name in (
            "hospital.keystore.json",
            "submitter.keystore.json",
            "keystore.passphrase",
            "nullifier.secret",
            "data.key",
            "client.token",
            "data/jobs.sqlite3",
        ):
            assert mode(folder / name) == 0o600, name
        # relay.toml and the keys are what `serve` reads: `check` accepts them as its header says
        checked = subprocess.run(
            [sys.executable, "-m", "prover.relay", "check", "--config", str(folder / "relay.toml")],
            cwd=ROOT,
            env=relay_env(folder),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == 0, checked.stderr
        assert re.search(r"^hospital +0x[0-9a-fA-F]{40}$", checked.stdout, re.M), checked.stdout

        assert server.ctrl_c() == 0, server.output()
        assert server.lines[-1].startswith("stopped the relay and anvil"), server.output()
        assert "Traceback" not in server.output()
        assert not listening(chain_port) and not listening(port)
    assert (folder / "anvil-state.json").is_file()

    # the same folder again: the chain and the jobs are back, the example is the same paid job
    with dev_server(dev_command(port, folder), tmp_path / "dev-2.log") as server:
        assert server.wait_for("submit:") == submit_line
        assert any(line.startswith("  chain     resumed from") for line in server.lines)
        again = subprocess.run(
            shlex.split(command), cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == {
            "job_id": accepted["job_id"],
            "state": "paid",
            "created": False,
        }
        assert server.ctrl_c() == 0, server.output()
    print(f"dev ready after {ready_s:.1f} s")


def test_dev_refuses_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run(
            dev_command(port, tmp_path / "dev"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: relay: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "pick another --port"
    ]


# ------------------------------------------------------------------------------ keys


def test_keys_new_keystore_is_private_loadable_and_never_overwritten(tmp_path: Path) -> None:
    runner = CliRunner()
    password = tmp_path / "hospital.pass"
    password.write_text("correct horse battery staple\n")
    keystore = tmp_path / "hospital.json"
    made = runner.invoke(
        cli, ["keys", "new-keystore", str(keystore), "--password-file", str(password)]
    )
    assert made.exit_code == 0, made.output
    assert made.output.splitlines()[0] == f"wrote keystore {keystore} (mode 0600)"
    address = made.output.splitlines()[-1]  # the address alone on stdout, the note on stderr
    assert re.fullmatch(r"0x[0-9a-fA-F]{40}", address)
    assert mode(keystore) == 0o600
    # what the relay's key loader does with it (passphrase from the environment)
    config = KeyConfig(keystore=keystore, passphrase=SecretStr("correct horse battery staple"))
    assert load_account("hospital", config).address == address

    before = keystore.read_bytes()
    again = runner.invoke(
        cli, ["keys", "new-keystore", str(keystore), "--password-file", str(password)]
    )
    assert again.exit_code == 1
    assert again.output.splitlines() == [
        f"Error: {keystore} already exists; refusing to overwrite it"
    ]
    assert keystore.read_bytes() == before

    prompted = tmp_path / "submitter.json"
    asked = runner.invoke(cli, ["keys", "new-keystore", str(prompted)], input="pw\npw\n")
    assert asked.exit_code == 0, asked.output
    config = KeyConfig(keystore=prompted, passphrase=SecretStr("pw"))
    assert load_account("submitter", config).address == asked.output.splitlines()[-1]

    nowhere = runner.invoke(cli, ["keys", "new-keystore", str(tmp_path / "no" / "k.json")])
    assert nowhere.exit_code == 1
    assert nowhere.output.splitlines() == [f"Error: folder {tmp_path / 'no'} does not exist"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hospital.json",
        "hospital.pass",
        "submitter.json",
    ]  # no partial files left behind


def test_keys_new_secret_is_what_the_relay_takes(tmp_path: Path) -> None:
    runner = CliRunner()
    secret = tmp_path / "nullifier.secret"
    made = runner.invoke(cli, ["keys", "new-secret", str(secret)])
    assert made.exit_code == 0, made.output
    assert mode(secret) == 0o600
    value = secret.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    settings = load_settings(
        None,
        rpc_urls=["http://127.0.0.1:8545"],
        settlement="0x" + "11" * 20,
        hospital_key={"keystore": tmp_path / "h.json"},
        submitter_key={"keystore": tmp_path / "s.json"},
        nullifier_secret=secret.read_text(),  # as "$(cat PATH)" or with its newline
    )
    assert settings.nullifier_key == bytes.fromhex(value)

    again = runner.invoke(cli, ["keys", "new-secret", str(secret)])
    assert again.exit_code == 1
    assert again.output.splitlines() == [
        f"Error: {secret} already exists; refusing to overwrite it"
    ]
    assert secret.read_text().strip() == value


# ------------------------------------------------------------------------------ example job


def test_example_job_is_a_held_out_patient_the_relay_accepts() -> None:
    body = json.loads(EXAMPLE.read_text())
    request = JobRequest.model_validate(body)
    assert request.model == MODEL and request.model_version == 1 and request.policy_id == 1
    assert request.features == [float(v) for v in load_dataset().x_test[0]]


def test_dev_writes_a_job_file_when_its_policy_is_not_the_examples(tmp_path: Path) -> None:
    folder = DevFolder(tmp_path)
    assert job_file(folder, 1) == EXAMPLE and not folder.job.exists()
    written = job_file(folder, 7)
    assert written == folder.job
    assert json.loads(written.read_text()) == {**json.loads(EXAMPLE.read_text()), "policy_id": 7}


# ------------------------------------------------------------------------------ README


def readme_quick_start() -> list[str]:
    """The commands of the fenced block under the README's relay quick-start heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Quick start: a local relay in one command", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in the relay quick start"
    commands = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def fresh_shell_env() -> dict[str, str]:
    """A new shell's environment: no activated venv, nothing zkcare exported."""
    dropped = {"SOLCX_BINARY_PATH", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("ZKCARE_")}
    ours = (str(ROOT / ".venv"), str(ROOT / "node_modules"))
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if not p.startswith(ours)
    )
    return env


@pytest.mark.slow
def test_readme_relay_quick_start_runs_verbatim_in_a_fresh_shell(tmp_path: Path) -> None:
    commands = readme_quick_start()
    assert len(commands) == 3 and " prover.relay dev " in commands[0], commands
    # the only changes: a free port for 8080 and a temporary folder for relay-dev
    port, folder = free_port(), tmp_path / "relay-dev"

    def local(command: str) -> str:
        return command.replace("8080", str(port)).replace("relay-dev", str(folder))

    env = fresh_shell_env()
    dev, *rest = (local(c) for c in commands)
    with dev_server(["bash", "-c", f"exec {dev}"], tmp_path / "dev.log", env) as server:
        printed = server.wait_for("submit:").removeprefix("submit:").strip()
        assert f"{printed} --wait" == rest[0]  # the README's submit is the one dev prints
        outputs = []
        for command in rest:
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=PAID_TIMEOUT_S + 60,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            outputs.append(done)
        final = json.loads(outputs[0].stdout)
        assert final["state"] == "paid" and final["amount_wei"] == "10000000000000000"
        assert outputs[0].stderr.splitlines()[-1] == f"job {final['job_id']}: paid"
        assert re.match(rf"{final['job_id']}  paid +policy 1  0x[0-9a-f]{{64}}$", outputs[1].stdout)
        assert server.ctrl_c() == 0, server.output()
