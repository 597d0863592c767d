"""``ape run deploy``: deploy zkcare (verifiers, registry, settlement, bounty) to a network.

ape run deploy all --network ethereum:local:foundry --account TEST::0
ape run deploy all --network https://rpc.example --account my-keystore-alias
"""

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option, ape_cli_context

from prover.exceptions import ZkcareError


@click.group()
def cli() -> None:
    """Deploy zkcare's contracts."""


@cli.command(cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.option(
    "--min-reveal-delay",
    default=1,
    show_default=True,
    help="Blocks between a bounty commitment and its reveal.",
)
@click.option(
    "--srs",
    "srs_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Ceremony SRS (default: a cached dev SRS, not for production).",
)
@click.option(
    "--out",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for <chain-id>.json (default: deployments/).",
)
def all(
    cli_ctx, account, min_reveal_delay: int, srs_file: Path | None, directory: Path | None
) -> None:
    """Deploy everything not already deployed and register the models."""
    from prover.deploy import deploy_all

    if min_reveal_delay < 1:
        raise click.BadParameter("must be at least 1 block", param_hint="--min-reveal-delay")
    try:
        deployer = deploy_all(
            account,
            min_reveal_delay=min_reveal_delay,
            srs_file=srs_file,
            directory=directory,
            log=cli_ctx.logger.info,
        )
    except ZkcareError as exc:
        raise click.UsageError(str(exc)) from exc
    cli_ctx.logger.success(f"deployments written to {deployer.path}")
