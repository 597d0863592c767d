"""``python -m prover.relay``: serve, check, submit, show, list, dev, keys.

``serve`` and ``check`` read the settings (``--config FILE`` or ``$ZKCARE_RELAY_CONFIG``, plus
``ZKCARE_RELAY_*`` variables) and exit 2 with one line per problem if they are invalid.
``submit``, ``show`` and ``list`` talk to a running relay over HTTP (``--url`` or
``$ZKCARE_RELAY_URL``, default ``http://127.0.0.1:8080``). ``dev`` runs a local anvil chain
with everything deployed and a relay on it (:mod:`prover.relay.dev`); ``keys`` writes the
keystores and the nullifier secret a relay reads.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
import requests

from prover.exceptions import RelayConfigError, ZkcareError
from prover.relay.states import JobState

DEFAULT_URL = "http://127.0.0.1:8080"
config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML settings file (default: $ZKCARE_RELAY_CONFIG).",
)
url_option = click.option(
    "--url", envvar="ZKCARE_RELAY_URL", default=DEFAULT_URL, show_default=True, help="Relay URL."
)


def _fail_config(exc: RelayConfigError) -> None:
    click.echo("zkcare relay: invalid settings", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem}", err=True)
    raise SystemExit(2)


@click.group()
def cli() -> None:
    """zkcare prover relay: claim jobs -> proofs -> on-chain payouts."""


@cli.command()
@config_option
@click.option("--host", default=None, help="Listen address (overrides settings).")
@click.option("--port", type=int, default=None, help="Listen port (overrides settings).")
def serve(config_file: Path | None, host: str | None, port: int | None) -> None:
    """Run the relay (HTTP API, provers, submitter) until interrupted."""
    import uvicorn

    from prover.relay.api import create_app
    from prover.relay.service import Relay
    from prover.relay.settings import load_settings

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    try:
        settings = load_settings(config_file, **overrides)
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        relay = Relay(settings)
    except RelayConfigError as exc:
        _fail_config(exc)
        return
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc
    app = create_app(relay)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )


@cli.command()
@config_option
def check(config_file: Path | None) -> None:
    """Validate settings, keys and bundles; print the addresses in use."""
    from prover.relay.keys import load_keys
    from prover.relay.service import resolve_models
    from prover.relay.settings import load_settings

    try:
        settings = load_settings(config_file)
        keys = load_keys(settings)
        models = resolve_models(settings.models)
        benchmark = None
        if settings.evaluation is not None:
            from prover.relay.evaluations import resolve_benchmark

            benchmark = resolve_benchmark(settings.evaluation)
    except RelayConfigError as exc:
        _fail_config(exc)
        return
    click.echo(f"settlement  {settings.settlement}")
    click.echo(f"hospital    {keys.hospital.address}")
    click.echo(f"submitter   {keys.submitter.address}")
    for (name, version), model in sorted(models.items()):
        card = model.card
        click.echo(
            f"model       {name} v{version}: {model.ref.bundle_path} "
            f"({card.width} features -> {card.output_count} outputs)"
        )
    if settings.evaluation is not None and benchmark is not None:
        click.echo(
            f"evaluation  {benchmark.size}-patient private benchmark, bundle "
            f"{benchmark.bundle.path}, ResearchBounty {settings.evaluation.bounty_contract}"
        )


def _request(method: str, url: str, **kwargs: Any) -> Any:
    try:
        response = requests.request(method, url, timeout=30, **kwargs)
    except requests.RequestException as exc:
        raise click.ClickException(f"relay at {url} is unreachable ({type(exc).__name__})") from exc
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    if response.status_code >= 400:
        extra = ""
        if response.headers.get("Retry-After"):
            extra = f" (retry after {response.headers['Retry-After']} s)"
        raise click.ClickException(f"{response.status_code}: {body.get('detail')}{extra}")
    return body


@cli.command()
@click.argument("job_file", type=click.File("rb"))
@url_option
@click.option(
    "--wait",
    is_flag=True,
    help="Follow the job until it is paid, denied or failed; print its final status "
    "(exit 1 if it failed).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds --wait waits.",
)
def submit(job_file: Any, url: str, wait: bool, timeout: float) -> None:
    """Submit the claim job in JOB_FILE (JSON; see the OpenAPI schema at /docs)."""
    body = _request(
        "POST",
        f"{url}/v1/jobs",
        data=job_file.read(),
        headers={"Content-Type": "application/json"},
    )
    if not wait:
        click.echo(json.dumps(body, indent=1))
        return
    status = _follow(url, str(body["job_id"]), timeout)
    click.echo(json.dumps(status, indent=1))
    if status["state"] == JobState.FAILED:
        raise click.ClickException(f"job {status['job_id']} failed: {status.get('reason')}")


def _follow(url: str, job_id: str, timeout: float) -> dict[str, Any]:
    """Poll a job until it is final, printing each state it passes to stderr."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        status: dict[str, Any] = _request("GET", f"{url}/v1/jobs/{job_id}")
        if status["state"] != seen:
            seen = status["state"]
            click.echo(f"job {job_id}: {seen}", err=True)
        if JobState(status["state"]).final:
            return status
        if time.monotonic() > deadline:
            raise click.ClickException(f"job {job_id} is still {seen} after {timeout:g} s")
        time.sleep(0.25)


@cli.command()
@click.argument("job_id")
@url_option
def show(job_id: str, url: str) -> None:
    """Show one job's status."""
    click.echo(json.dumps(_request("GET", f"{url}/v1/jobs/{job_id}"), indent=1))


@cli.command("list")
@click.option("--state", default=None, help="Only jobs in this state.")
@click.option("--limit", default=100, show_default=True)
@url_option
def list_jobs(state: str | None, limit: int, url: str) -> None:
    """List jobs, oldest first (one line each)."""
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    for job in _request("GET", f"{url}/v1/jobs", params=params)["jobs"]:
        tx = job.get("tx_hash") or "-"
        reason = f"  {job['reason']}" if job.get("reason") else ""
        click.echo(f"{job['job_id']}  {job['state']:<9}  policy {job['policy_id']}  {tx}{reason}")


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="The relay's port on 127.0.0.1.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("relay-dev"),
    show_default=True,
    help="Folder for the keys, the secret, relay.toml, anvil's chain state and the jobs; "
    "reused by the next start (delete it to start over).",
)
def dev(port: int, directory: Path) -> None:
    """Local relay in one command: anvil, contracts, keys, a policy, then serve.

    Starts anvil (its chain kept in DIR/anvil-state.json), deploys the model registry with the
    built-in diagnostic model, a ClaimSettlement with a funded ETH pool trusting the hospital, a
    product and a policy, funds the submitter, writes the hospital and submitter keystores, the
    nullifier secret and DIR/relay.toml, and serves the relay until Ctrl-C, which stops anvil
    too. Its last lines give the relay URL and the command that submits the example job
    (examples/job.json). Run it from the repository root. For local use only: the keys'
    passphrase and the secret lie in DIR.
    """
    from prover.relay.dev import run_dev

    try:
        run_dev(directory, port, click.echo)
    except RelayConfigError as exc:
        _fail_config(exc)
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group()
def keys() -> None:
    """Create the keystores and the nullifier secret a relay reads (files mode 0600)."""


@keys.command("new-keystore")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read the passphrase from this file (trailing newlines dropped); default: prompt.",
)
def new_keystore(path: Path, password_file: Path | None) -> None:
    """Write a new key as an encrypted keystore at PATH and print its address.

    The relay takes it as `keystore = "PATH"` under [hospital_key] or [submitter_key] and reads
    the passphrase from ZKCARE_RELAY_HOSPITAL_KEY__PASSPHRASE or
    ZKCARE_RELAY_SUBMITTER_KEY__PASSPHRASE. Refuses to overwrite an existing file.
    """
    from prover.relay import keys as relay_keys

    _refuse_existing(path)
    if password_file is not None:
        try:
            passphrase = password_file.read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(
                f"cannot read {password_file} ({type(exc).__name__})"
            ) from None
        if not passphrase:
            raise click.ClickException(f"{password_file} holds no passphrase")
    else:
        passphrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True)
    try:
        address = relay_keys.new_keystore(path, passphrase)
    except (ZkcareError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {path} ({exc.strerror or exc})") from exc
    click.echo(f"wrote keystore {path} (mode 0600)", err=True)
    click.echo(address)


@keys.command("new-secret")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def new_secret(path: Path) -> None:
    """Write a new nullifier secret (32 random bytes, hex) at PATH.

    The relay reads it from ZKCARE_RELAY_NULLIFIER_SECRET, e.g.
    ZKCARE_RELAY_NULLIFIER_SECRET="$(cat PATH)". Refuses to overwrite an existing file.
    """
    from prover.relay import keys as relay_keys

    _refuse_existing(path)
    try:
        relay_keys.new_secret(path)
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {path} ({exc.strerror or exc})") from exc
    click.echo(f"wrote nullifier secret {path} (mode 0600)", err=True)


def _refuse_existing(path: Path) -> None:
    """Fail before asking for anything when PATH exists or its folder does not."""
    if path.exists() or path.is_symlink():
        raise click.ClickException(f"{path} already exists; refusing to overwrite it")
    if not path.parent.is_dir():
        raise click.ClickException(f"folder {path.parent} does not exist")


if __name__ == "__main__":
    cli()
