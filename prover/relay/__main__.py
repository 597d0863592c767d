"""``python -m prover.relay``: serve, check, submit, show, list.

``serve`` and ``check`` read the settings (``--config FILE`` or ``$ZKCARE_RELAY_CONFIG``, plus
``ZKCARE_RELAY_*`` variables) and exit 2 with one line per problem if they are invalid.
``submit``, ``show`` and ``list`` talk to a running relay over HTTP (``--url`` or
``$ZKCARE_RELAY_URL``, default ``http://127.0.0.1:8080``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import requests

from prover.exceptions import RelayConfigError, ZkcareError

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
def submit(job_file: Any, url: str) -> None:
    """Submit the claim job in JOB_FILE (JSON; see the OpenAPI schema at /docs)."""
    body = _request(
        "POST",
        f"{url}/v1/jobs",
        data=job_file.read(),
        headers={"Content-Type": "application/json"},
    )
    click.echo(json.dumps(body, indent=1))


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


if __name__ == "__main__":
    cli()
