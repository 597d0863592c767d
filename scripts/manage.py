"""``ape run manage``: operate a deployed zkcare, one command per role action.

ape run manage show --network http://127.0.0.1:8545
ape run manage pool create --network ... --account insurer
ape run manage pool fund 1 10 --network ... --account insurer
ape run manage hospital trust 1 0xHospital --network ... --account insurer
ape run manage product create 1 --pay-if malignant --payout 1 --network ... --account insurer
ape run manage policy issue 1 0xHolder --coverage 2 --days 365 --network ... --account insurer
ape run manage model revoke zkcare/breast_cancer_lr 1 --network ... --account guardian
ape run manage bounty create --amount 5 --min-accuracy 0.875 --deadline-hours 72 ...
ape run manage bounty reclaim 1 --network ... --account sponsor
"""

from collections.abc import Callable
from typing import Any

import click
from ape.cli import ConnectedProviderCommand, account_option, ape_cli_context

from prover.exceptions import InvalidInput, ZkcareError


def _run(action: Callable[..., Any], *args: Any) -> Any:
    """Load the deployment and run ``action``; one clear line on any failure."""
    from ape.exceptions import ApeException

    from prover.operations import Deployment

    try:
        return action(Deployment.load(), *args)
    except InvalidInput as exc:
        raise click.BadArgumentUsage(str(exc)) from exc
    except ZkcareError as exc:
        raise click.UsageError(str(exc)) from exc
    except ApeException as exc:  # a revert: ape decodes our custom errors into their names
        raise click.UsageError(f"transaction reverted: {type(exc).__name__}({exc})") from exc


@click.group()
def cli() -> None:
    """Operate zkcare: models, pools, hospitals, products, policies, bounties."""


@cli.command(cls=ConnectedProviderCommand)
@ape_cli_context()
def show(cli_ctx) -> None:
    """Print the deployment, models, pools and bounties."""
    from prover.operations import summary

    click.echo(_run(summary))


# ------------------------------------------------------------------------------- models
@cli.group()
def model() -> None:
    """Registry (guardian) actions."""


@model.command(cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
def revoke(cli_ctx, account, name: str, version: int) -> None:
    """Tombstone NAME's VERSION for ever (GUARDIAN_ROLE)."""
    from prover.operations import revoke_model

    _run(lambda d: revoke_model(d, account, name, version))
    cli_ctx.logger.success(f"model {name} v{version} revoked")


# ------------------------------------------------------------------------------- pools
@cli.group()
def pool() -> None:
    """Insurer pool actions."""


@pool.command(name="create", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.option("--token", help="ERC-20 address (default: ETH).")
def pool_create(cli_ctx, account, token: str | None) -> None:
    """Create a pool owned by the account (the insurer)."""
    from prover.operations import create_pool

    pool_id = _run(lambda d: create_pool(d, account, token))
    cli_ctx.logger.success(f"pool {pool_id} created")


@pool.command(name="fund", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("pool_id", type=click.IntRange(min=1))
@click.argument("amount")
def pool_fund(cli_ctx, account, pool_id: int, amount: str) -> None:
    """Add AMOUNT (ether or token units) to POOL_ID."""
    from prover.operations import fund_pool

    raw = _run(lambda d: fund_pool(d, account, pool_id, amount))
    cli_ctx.logger.success(f"pool {pool_id} funded with {raw} base units")


@pool.command(name="withdraw", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("pool_id", type=click.IntRange(min=1))
@click.argument("amount")
@click.option("--to", "to", help="Recipient (default: the account).")
def pool_withdraw(cli_ctx, account, pool_id: int, amount: str, to: str | None) -> None:
    """Withdraw unreserved AMOUNT from POOL_ID."""
    from prover.operations import withdraw_pool

    _run(lambda d: withdraw_pool(d, account, pool_id, amount, to or account.address))
    cli_ctx.logger.success(f"withdrew {amount} from pool {pool_id}")


# ------------------------------------------------------------------------------- hospitals
@cli.group()
def hospital() -> None:
    """Hospitals whose attestations a pool accepts."""


@hospital.command(cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("pool_id", type=click.IntRange(min=1))
@click.argument("address")
@click.option("--revoke", is_flag=True, help="Stop trusting the hospital.")
def trust(cli_ctx, account, pool_id: int, address: str, revoke: bool) -> None:
    """Register ADDRESS as a trusted hospital of POOL_ID."""
    from prover.operations import trust_hospital

    _run(lambda d: trust_hospital(d, account, pool_id, address, not revoke))
    cli_ctx.logger.success(f"hospital {address} {'untrusted' if revoke else 'trusted'}")


# ------------------------------------------------------------------------------- products
@cli.group()
def product() -> None:
    """Products: model + payout rule + payout."""


@product.command(name="create", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("pool_id", type=click.IntRange(min=1))
@click.option("--model", "model_name", default="zkcare/breast_cancer_lr", show_default=True)
@click.option(
    "--pay-if",
    type=click.Choice(["malignant", "benign"]),
    help="Shortcut for the diagnostic model: logit <= 0 (malignant) or > 0.",
)
@click.option("--comparison", type=click.Choice(["at-least", "at-most"]))
@click.option("--threshold", type=float, help="Output threshold (model units, e.g. a logit).")
@click.option("--payout", required=True, help="Payout per claim (ether or token units).")
def product_create(
    cli_ctx,
    account,
    pool_id: int,
    model_name: str,
    pay_if: str | None,
    comparison: str | None,
    threshold: float | None,
    payout: str,
) -> None:
    """Define a product on POOL_ID."""
    from prover.operations import AT_LEAST, AT_MOST, create_product

    if pay_if and (comparison or threshold is not None):
        raise click.BadOptionUsage("pay_if", "use either --pay-if or --comparison/--threshold")
    if pay_if:
        cmp, thr = (AT_MOST, 0.0) if pay_if == "malignant" else (AT_LEAST, 2.0**-14)
    elif comparison and threshold is not None:
        cmp, thr = (AT_LEAST if comparison == "at-least" else AT_MOST), threshold
    else:
        raise click.BadOptionUsage("pay_if", "give --pay-if, or both --comparison and --threshold")
    product_id = _run(lambda d: create_product(d, account, pool_id, model_name, cmp, thr, payout))
    cli_ctx.logger.success(f"product {product_id} created")


# ------------------------------------------------------------------------------- policies
@cli.group()
def policy() -> None:
    """Policies issued by the insurer."""


@policy.command(name="issue", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("product_id", type=click.IntRange(min=1))
@click.argument("holder")
@click.option("--coverage", required=True, help="Coverage limit (ether or token units).")
@click.option("--days", type=float, default=365.0, show_default=True)
def policy_issue(
    cli_ctx, account, product_id: int, holder: str, coverage: str, days: float
) -> None:
    """Issue a policy of PRODUCT_ID to HOLDER."""
    from prover.operations import issue_policy

    policy_id = _run(lambda d: issue_policy(d, account, product_id, holder, coverage, days))
    cli_ctx.logger.success(f"policy {policy_id} issued to {holder}")


# ------------------------------------------------------------------------------- bounties
@cli.group()
def bounty() -> None:
    """Research bounties on the committed held-out benchmark."""


@bounty.command(name="create", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.option("--amount", required=True, help="Escrow (ether or token units).")
@click.option("--min-accuracy", type=float, required=True, help="e.g. 0.875 (7 of 8).")
@click.option("--deadline-hours", type=float, default=72.0, show_default=True)
@click.option("--token", help="ERC-20 address (default: ETH).")
def bounty_create(
    cli_ctx, account, amount: str, min_accuracy: float, deadline_hours: float, token: str | None
) -> None:
    """Escrow a bounty for the first private model reaching MIN_ACCURACY."""
    from prover.operations import create_bounty

    bounty_id = _run(
        lambda d: create_bounty(d, account, amount, min_accuracy, deadline_hours, token)
    )
    cli_ctx.logger.success(f"bounty {bounty_id} created")


@bounty.command(name="reclaim", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("bounty_id", type=click.IntRange(min=1))
def bounty_reclaim(cli_ctx, account, bounty_id: int) -> None:
    """Cancel/refund: return an unpaid bounty to its sponsor (from its deadline on).

    There is no cancel before the deadline on purpose: researchers rely on the escrow.
    """
    from prover.operations import reclaim_bounty

    _run(lambda d: reclaim_bounty(d, account, bounty_id))
    cli_ctx.logger.success(f"bounty {bounty_id} reclaimed")
