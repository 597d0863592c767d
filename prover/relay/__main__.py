"""``python -m prover.relay``: serve, check, submit, show, list, dev, keys, clients.

``serve`` and ``check`` read the settings (``--config FILE`` or ``$ZKCARE_RELAY_CONFIG``, plus
``ZKCARE_RELAY_*`` variables) and exit 2 with one line per problem if they are invalid.
``submit``, ``show`` and ``list`` talk to a running relay over HTTP (``--url`` or
``$ZKCARE_RELAY_URL``, default ``http://127.0.0.1:8080``) with a client token (``--token-file``
or ``$ZKCARE_RELAY_TOKEN``; ``--cacert`` for a relay with its own CA). ``dev`` runs a local anvil
chain with everything deployed and a relay on it (:mod:`prover.relay.dev`); ``keys`` writes the
keystores, the nullifier secret and the data key a relay reads; ``clients`` creates, lists,
rotates and revokes the relay's clients in its store.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Remote:
    """How to reach a relay: its URL, a client token, the CA that signed its certificate."""

    url: str
    token: str
    cacert: Path | None


def remote_options(fn: Any) -> Any:
    """``--url``, ``--token-file`` / ``$ZKCARE_RELAY_TOKEN`` and ``--cacert`` as one ``remote``."""

    fn = click.option(
        "--cacert",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        envvar="ZKCARE_RELAY_CACERT",
        default=None,
        help="CA certificate (PEM) of an https relay with its own CA ($ZKCARE_RELAY_CACERT).",
    )(fn)
    fn = click.option(
        "--token-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="File holding the client token (else $ZKCARE_RELAY_TOKEN).",
    )(fn)
    return url_option(fn)


def _remote(url: str, token_file: Path | None, cacert: Path | None) -> Remote:
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise click.ClickException(
                f"cannot read token file {token_file} ({exc.strerror or type(exc).__name__})"
            ) from None
    else:
        token = os.environ.get("ZKCARE_RELAY_TOKEN", "").strip()
    if not token:
        raise click.ClickException(
            "no client token: give --token-file FILE or set ZKCARE_RELAY_TOKEN "
            "(python -m prover.relay clients create NAME --scope submit,read)"
        )
    return Remote(url.rstrip("/"), token, cacert)


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
@click.option(
    "--insecure-bind-i-know",
    "insecure_bind",
    is_flag=True,
    help="Listen beyond loopback without TLS or a trusted proxy (tokens then cross the network "
    "in the clear).",
)
def serve(
    config_file: Path | None, host: str | None, port: int | None, insecure_bind: bool
) -> None:
    """Run the relay (HTTP API, provers, submitter) until interrupted.

    A non-loopback host is refused unless the relay serves TLS itself (tls_cert_file,
    tls_key_file) or runs behind a trusted reverse proxy (trusted_proxies), or
    --insecure-bind-i-know is given.
    """
    import uvicorn

    from prover.exceptions import InsecureBind
    from prover.relay.api import create_app, server_options
    from prover.relay.service import Relay
    from prover.relay.settings import check_bind, is_loopback, load_settings

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    try:
        settings = load_settings(config_file, **overrides)
        check_bind(settings, insecure=insecure_bind)
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        relay = Relay(settings)
        relay.lock_data_dir()  # refused here in one line, not in the server's lifespan
    except RelayConfigError as exc:
        _fail_config(exc)
        return
    except InsecureBind as exc:
        raise click.UsageError(str(exc)) from None
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc
    if insecure_bind and not (is_loopback(settings.host) or settings.tls):
        logging.getLogger("zkcare.relay").warning(
            "--insecure-bind-i-know: serving plain HTTP on %s", settings.host
        )
    app = create_app(relay)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
        **server_options(settings),
    )


@cli.command()
@config_option
def check(config_file: Path | None) -> None:
    """Validate settings, keys and bundles; print the addresses in use."""
    from prover.relay.keys import load_keys
    from prover.relay.service import load_data_key, resolve_models
    from prover.relay.settings import load_settings

    try:
        settings = load_settings(config_file)
        keys = load_keys(settings)
        try:
            load_data_key(settings)
        except ZkcareError as exc:
            raise RelayConfigError([str(exc)]) from None
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


def _request(method: str, remote: Remote, path: str, **kwargs: Any) -> Any:
    url = remote.url + path
    headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {remote.token}"}
    verify: bool | str = str(remote.cacert) if remote.cacert is not None else True
    try:
        response = requests.request(
            method, url, timeout=30, headers=headers, verify=verify, **kwargs
        )
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
@remote_options
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
def submit(
    job_file: Any,
    url: str,
    token_file: Path | None,
    cacert: Path | None,
    wait: bool,
    timeout: float,
) -> None:
    """Submit the claim job in JOB_FILE (JSON; see the OpenAPI schema at /openapi.json)."""
    remote = _remote(url, token_file, cacert)
    body = _request(
        "POST",
        remote,
        "/v1/jobs",
        data=job_file.read(),
        headers={"Content-Type": "application/json"},
    )
    if not wait:
        click.echo(json.dumps(body, indent=1))
        return
    status = _follow(remote, str(body["job_id"]), timeout)
    click.echo(json.dumps(status, indent=1))
    if status["state"] == JobState.FAILED:
        raise click.ClickException(f"job {status['job_id']} failed: {status.get('reason')}")


def _follow(remote: Remote, job_id: str, timeout: float) -> dict[str, Any]:
    """Poll a job until it is final, printing each state it passes to stderr."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        status: dict[str, Any] = _request("GET", remote, f"/v1/jobs/{job_id}")
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
@remote_options
def show(job_id: str, url: str, token_file: Path | None, cacert: Path | None) -> None:
    """Show one job's status."""
    remote = _remote(url, token_file, cacert)
    click.echo(json.dumps(_request("GET", remote, f"/v1/jobs/{job_id}"), indent=1))


@cli.command("list")
@click.option("--state", default=None, help="Only jobs in this state.")
@click.option("--limit", default=100, show_default=True)
@remote_options
def list_jobs(
    state: str | None, limit: int, url: str, token_file: Path | None, cacert: Path | None
) -> None:
    """List the client's jobs (every job for an admin client), oldest first (one line each)."""
    remote = _remote(url, token_file, cacert)
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    for job in _request("GET", remote, "/v1/jobs", params=params)["jobs"]:
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


def _write_secret(path: Path, what: str) -> None:
    """Write 32 random bytes (hex, mode 0600) at ``path``, refusing an existing file."""
    from prover.relay import keys as relay_keys

    _refuse_existing(path)
    try:
        relay_keys.new_secret(path)
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {path} ({exc.strerror or exc})") from exc
    click.echo(f"wrote {what} {path} (mode 0600)", err=True)


@keys.command("new-secret")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def new_secret(path: Path) -> None:
    """Write a new nullifier secret (32 random bytes, hex) at PATH.

    The relay reads it from ZKCARE_RELAY_NULLIFIER_SECRET, e.g.
    ZKCARE_RELAY_NULLIFIER_SECRET="$(cat PATH)". Refuses to overwrite an existing file.
    """
    _write_secret(path, "nullifier secret")


@keys.command("new-data-key")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def new_data_key(path: Path) -> None:
    """Write a new data key (32 random bytes, hex; seals patient input at rest) at PATH.

    Keep it outside the relay's data_dir (one backup must not hold both) and name it in the
    settings as data_key_file = "PATH" (or give it as ZKCARE_RELAY_DATA_KEY="$(cat PATH)").
    Refuses to overwrite an existing file.
    """
    _write_secret(path, "data key")


# ------------------------------------------------------------------------------- clients


def _store_settings(config_file: Path | None) -> tuple[Path, str | None]:
    """The relay's data_dir and store_dsn from ``$ZKCARE_RELAY_DATA_DIR`` /
    ``$ZKCARE_RELAY_STORE_DSN``, the config file, or the defaults (only these settings are
    read: the clients commands need no keys or secrets)."""
    import tomllib

    from prover.relay.settings import CONFIG_ENV, ENV_PREFIX

    path = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise click.ClickException(f"config file {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise click.ClickException(f"config file {path}: {exc}") from None
    data_dir = os.environ.get(ENV_PREFIX + "DATA_DIR") or str(data.get("data_dir", "relay-data"))
    dsn = os.environ.get(ENV_PREFIX + "STORE_DSN") or data.get("store_dsn")
    return Path(data_dir), (str(dsn) if dsn else None)


def _client_store(config_file: Path | None, create: bool = False) -> Any:
    """The relay's store: PostgreSQL with a store_dsn, else SQLite in data_dir (``create``:
    made, ``0600`` in a ``0700`` data_dir, if missing)."""
    from prover.relay.store import JobStore, open_store

    data_dir, dsn = _store_settings(config_file)
    db = data_dir / "jobs.sqlite3"
    if dsn is None and not db.exists() and not create:
        raise click.ClickException(
            f"no job store at {db}: start the relay once (or check data_dir in the settings)"
        )
    try:
        store: JobStore = open_store(db, dsn, pool_size=2)
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc
    return store


def _write_token(path: Path, token: str) -> None:
    from prover.relay.keys import write_private

    _refuse_existing(path)
    write_private(path, token + "\n")


@cli.group()
def clients() -> None:
    """Relay clients: API tokens with scopes (submit, read, admin); shown once."""


@clients.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="submit, read or admin (repeat, or comma-separate).",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the token to this new 0600 file instead of printing it.",
)
@config_option
def clients_create(
    name: str, scopes: tuple[str, ...], token_file: Path | None, config_file: Path | None
) -> None:
    """Create client NAME; its token goes to stdout (or --token-file), once."""
    from prover.relay.auth import parse_scopes

    store = _client_store(config_file, create=True)
    try:
        client, token = store.create_client(name, parse_scopes(scopes))
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    scope_text = ",".join(sorted(client.scopes))
    if token_file is not None:
        _write_token(token_file, token)
        click.echo(f"client {client.id} {client.name} ({scope_text}): token in {token_file}")
        return
    click.echo(
        f"client {client.id} {client.name} ({scope_text}); its token (shown once):", err=True
    )
    click.echo(token)


@clients.command("list")
@config_option
def clients_list(config_file: Path | None) -> None:
    """List clients: id, name, scopes, live tokens, revoked or active."""
    store = _client_store(config_file)
    try:
        rows = store.clients()
    finally:
        store.close()
    for client, live in rows:
        status = "revoked" if client.revoked else "active"
        scope_text = ",".join(sorted(client.scopes))
        click.echo(f"{client.id}  {client.name:<20}  {scope_text:<18}  {live} token(s)  {status}")


@clients.command("revoke")
@click.argument("client")
@config_option
def clients_revoke(client: str, config_file: Path | None) -> None:
    """Revoke CLIENT (id or name) and all its tokens, effective at the next request."""
    store = _client_store(config_file)
    try:
        done = store.revoke_client(client)
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"client {done.id} {done.name}: revoked")


@clients.command("rotate")
@click.argument("client")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the new token to this new 0600 file instead of printing it.",
)
@config_option
def clients_rotate(client: str, token_file: Path | None, config_file: Path | None) -> None:
    """A new token for CLIENT (id or name); its old tokens stop working at once."""
    store = _client_store(config_file)
    try:
        done, token = store.rotate_client(client)
    except ZkcareError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    if token_file is not None:
        _write_token(token_file, token)
        click.echo(f"client {done.id} {done.name}: new token in {token_file}; old ones revoked")
        return
    click.echo(f"client {done.id} {done.name}: new token (shown once); old ones revoked", err=True)
    click.echo(token)


def _refuse_existing(path: Path) -> None:
    """Fail before asking for anything when PATH exists or its folder does not."""
    if path.exists() or path.is_symlink():
        raise click.ClickException(f"{path} already exists; refusing to overwrite it")
    if not path.parent.is_dir():
        raise click.ClickException(f"folder {path.parent} does not exist")


if __name__ == "__main__":
    cli()
