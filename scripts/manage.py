"""``ape run manage``: operate a deployed zkcare, one command per role action.

Addresses come from the connected chain's manifest (``deployments/<chain-id>.json``, or
``--deployments DIR`` / ``ZKCARE_DEPLOYMENTS``). Commands that send transactions take
``--account``; every command takes ``--network`` (an ape network or an RPC URL)::

    ape run manage show --network http://127.0.0.1:8545
    ape run manage model register diagnostic --version 2 --network ... --account registrar
    ape run manage model revoke zkcare/breast_cancer_lr 1 --network ... --account guardian
    ape run manage pool create [--token 0xToken] --network ... --account insurer
    ape run manage pool fund 1 10 --network ... --account insurer
    ape run manage hospital trust 1 0xHospital --network ... --account insurer
    ape run manage product create 1 --pay-if malignant --payout 1 --network ... --account insurer
    ape run manage product create 1 --model acme/cnn --pay-if-class 3 --payout 1 ...
    ape run manage policy issue 1 0xHolder --coverage 2 --days 365 --network ... --account insurer
    ape run manage bounty create --amount 5 --min-accuracy 0.95 --deadline-hours 72 ...
    ape run manage bounty reclaim 1 --network ... --account sponsor

The logic lives in :mod:`prover.operations`; this file only parses and reports. Bad input and
refused actions end in one ``Error: ...`` line.
"""

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
from ape.cli import ConnectedProviderCommand, account_option, ape_cli_context

from prover import operations as ops
from prover.deploy import DIAGNOSTIC_MODEL_NAME
from prover.exceptions import InvalidInput, ZkcareError

T = TypeVar("T")
_DEPLOYMENTS = "zkcare.deployments"
#: Lets a positional amount start with "-" so that it gets a clear "must be positive" error.
_NUMERIC_ARGS = {"ignore_unknown_options": True}


class AmountType(click.ParamType):
    """A positive decimal amount in whole units of the asset (``1.5``)."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return ops.parse_decimal(value, "amount")
        except InvalidInput as exc:
            self.fail(str(exc), param, ctx)


class AddressType(click.ParamType):
    """A 20-byte hex address, returned checksummed."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return ops.checksum(value)
        except InvalidInput as exc:
            self.fail(str(exc), param, ctx)


AMOUNT, ADDRESS = AmountType(), AddressType()
ID = click.IntRange(min=1)
VERSION = click.IntRange(1, 2**32 - 1)


def _run(action: Callable[[ops.Deployment], T]) -> T:
    """Run ``action`` on the connected chain's deployment; one clear line on any failure."""
    from ape.exceptions import ApeException

    ctx = click.get_current_context()
    try:
        return action(ops.Deployment.load(ctx.meta.get(_DEPLOYMENTS)))
    except ops.InvalidArgument as exc:
        param = next((p for p in ctx.command.params if p.name == exc.field), None)
        if param is not None:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
        raise click.BadArgumentUsage(str(exc), ctx=ctx) from exc
    except InvalidInput as exc:
        raise click.BadArgumentUsage(str(exc), ctx=ctx) from exc
    except ZkcareError as exc:
        raise click.UsageError(str(exc), ctx=ctx) from exc
    except ApeException as exc:  # a revert that slipped past the checks: its decoded name
        raise click.UsageError(ops.describe_failure(exc), ctx=ctx) from exc


@click.group()
@click.option(
    "--deployments",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="ZKCARE_DEPLOYMENTS",
    help="Directory of <chain-id>.json manifests (default: deployments/).",
)
@click.pass_context
def cli(ctx: click.Context, deployments: Path | None) -> None:
    """Operate zkcare: models, pools, hospitals, products, policies, bounties."""
    ctx.meta[_DEPLOYMENTS] = deployments


@cli.command(cls=ConnectedProviderCommand)
@ape_cli_context()
def show(cli_ctx) -> None:
    """Print the deployment, models, pools, products, policies and bounties."""
    click.echo(_run(ops.summary))


# ------------------------------------------------------------------------------- models
@cli.group()
def model() -> None:
    """Model registry: register (REGISTRAR_ROLE), revoke (GUARDIAN_ROLE), show."""


@model.command(name="register", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("source")
@click.option("--version", "version", type=VERSION, required=True, help="Version to register.")
@click.option(
    "--name",
    "name",
    help="Model name (default for built-ins: zkcare/breast_cancer_lr, zkcare/bounty_eval).",
)
@click.option(
    "--unsafe-skip-bundle-checks",
    "skip_checks",
    is_flag=True,
    help="UNSAFE: register without checking the bundle's fidelity report and its layout "
    "against a real proof.",
)
def model_register(
    cli_ctx, account, source: str, version: int, name: str | None, skip_checks: bool
) -> None:
    """Register SOURCE's verifier as a model version (deploying the verifier if needed).

    SOURCE is `diagnostic` or `eval` (the built-in bundles, built or reused from the cache)
    or a circuit bundle directory (then --name is required). The layout comes from the
    bundle's model card; a bundle whose fidelity check is missing or failed, or whose layout
    does not match its real sample proof, is refused. After registering, the sample proof is
    verified through the registry on-chain. Re-registering the same verifying key under the
    same version changes nothing.
    """
    view, sent = _run(
        lambda d: ops.register_model(
            d, account, source, version, name, cli_ctx.logger.info, skip_checks=skip_checks
        )
    )
    state = "registered" if sent else "already registered"
    cli_ctx.logger.success(f"model {view.name} v{view.version} {state} (verifier {view.verifier})")


@model.command(name="revoke", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("name")
@click.argument("version", type=VERSION)
def model_revoke(cli_ctx, account, name: str, version: int) -> None:
    """Tombstone NAME's VERSION for ever: no proof verifies against it again."""
    _run(lambda d: ops.revoke_model(d, account, name, version))
    cli_ctx.logger.success(f"model {name} v{version} revoked")


@model.command(name="show", cls=ConnectedProviderCommand)
@ape_cli_context()
@click.argument("name", required=False)
def model_show(cli_ctx, name: str | None) -> None:
    """Print every registered version of the manifest's models (or of NAME)."""
    click.echo(_run(lambda d: ops.model_summary(d, name)))


# ------------------------------------------------------------------------------- pools
@cli.group()
def pool() -> None:
    """Insurer pools (ETH or an ERC-20)."""


@pool.command(name="create", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.option("--token", type=ADDRESS, help="ERC-20 address (default: ETH).")
def pool_create(cli_ctx, account, token: str | None) -> None:
    """Create a pool; the account becomes its insurer."""
    view = _run(lambda d: ops.create_pool(d, account, token))
    cli_ctx.logger.success(f"pool {view.id} created ({view.asset.symbol})")


@pool.command(name="fund", cls=ConnectedProviderCommand, context_settings=_NUMERIC_ARGS)
@ape_cli_context()
@account_option()
@click.argument("pool_id", type=ID)
@click.argument("amount", type=AMOUNT)
def pool_fund(cli_ctx, account, pool_id: int, amount: Decimal) -> None:
    """Add AMOUNT (ether or token units; tokens are approved first) to POOL_ID."""
    view = _run(lambda d: ops.fund_pool(d, account, pool_id, amount))
    cli_ctx.logger.success(
        f"pool {pool_id} funded with {amount} {view.asset.symbol}; "
        f"balance {view.asset.format(view.balance)}"
    )


@pool.command(name="withdraw", cls=ConnectedProviderCommand, context_settings=_NUMERIC_ARGS)
@ape_cli_context()
@account_option()
@click.argument("pool_id", type=ID)
@click.argument("amount", type=AMOUNT)
@click.option("--to", "to", type=ADDRESS, help="Recipient (default: the account).")
def pool_withdraw(cli_ctx, account, pool_id: int, amount: Decimal, to: str | None) -> None:
    """Withdraw AMOUNT of POOL_ID's unreserved funds (insurer only)."""
    view = _run(lambda d: ops.withdraw_pool(d, account, pool_id, amount, to))
    cli_ctx.logger.success(
        f"withdrew {amount} {view.asset.symbol} from pool {pool_id} to {to or account.address}; "
        f"balance {view.asset.format(view.balance)}"
    )


# ------------------------------------------------------------------------------- hospitals
@cli.group()
def hospital() -> None:
    """Hospitals whose attestations a pool accepts."""


@hospital.command(name="trust", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("pool_id", type=ID)
@click.argument("address", type=ADDRESS)
@click.option("--revoke", is_flag=True, help="Stop trusting the hospital.")
def hospital_trust(cli_ctx, account, pool_id: int, address: str, revoke: bool) -> None:
    """Register ADDRESS as a trusted hospital of POOL_ID (insurer only)."""
    _run(lambda d: ops.trust_hospital(d, account, pool_id, address, not revoke))
    state = "no longer trusted" if revoke else "trusted"
    cli_ctx.logger.success(f"hospital {address} {state} by pool {pool_id}")


# ------------------------------------------------------------------------------- products
@cli.group()
def product() -> None:
    """Products: model version + payout rule + payout."""


@product.command(name="create", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("pool_id", type=ID)
@click.option("--model", "model_name", default=DIAGNOSTIC_MODEL_NAME, show_default=True)
@click.option("--version", "version", type=VERSION, help="Default: the manifest's version.")
@click.option(
    "--pay-if",
    "pay_if",
    type=click.Choice(["malignant", "benign"]),
    help="Diagnostic model only: pay if the logit (output 0) is <= 0 (malignant) or > 0 (benign).",
)
@click.option(
    "--pay-if-class",
    "pay_if_class",
    type=click.IntRange(min=0),
    metavar="K",
    help="Pay if output K is the largest of the model's outputs (arg-max, lowest index on ties): "
    "the classifier predicts class K.",
)
@click.option(
    "--comparison",
    type=click.Choice(["at-least", "at-most"]),
    help="Pay if output --output is at least / at most --threshold.",
)
@click.option(
    "--threshold",
    type=float,
    help="Output threshold in model units (e.g. a logit), converted with the model's scale.",
)
@click.option(
    "--output",
    "output",
    type=click.IntRange(min=0),
    metavar="K",
    help="With --comparison: the model output the rule reads.  [default: 0]",
)
@click.option("--payout", type=AMOUNT, required=True, help="Payout per claim (asset units).")
def product_create(
    cli_ctx,
    account,
    pool_id: int,
    model_name: str,
    version: int | None,
    pay_if: str | None,
    pay_if_class: int | None,
    comparison: str | None,
    threshold: float | None,
    output: int | None,
    payout: Decimal,
) -> None:
    """Define a product on POOL_ID (insurer only): give one rule, --pay-if, --pay-if-class, or
    --comparison/--threshold [--output]. Output and class indices are checked against the model
    version's number of outputs."""
    cmp = None
    if comparison is not None:
        cmp = ops.Comparison.AT_LEAST if comparison == "at-least" else ops.Comparison.AT_MOST
    view = _run(
        lambda d: ops.create_product(
            d,
            account,
            pool_id,
            payout,
            model=model_name,
            version=version,
            pay_if=pay_if,
            comparison=cmp,
            threshold=threshold,
            output=output,
            pay_if_class=pay_if_class,
        )
    )
    cli_ctx.logger.success(f"created {view.describe()}")


@product.command(name="retire", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("product_id", type=ID)
def product_retire(cli_ctx, account, product_id: int) -> None:
    """Retire PRODUCT_ID: no new policies; issued ones stay claimable until they expire."""
    _run(lambda d: ops.retire_product(d, account, product_id))
    cli_ctx.logger.success(f"product {product_id} retired")


# ------------------------------------------------------------------------------- policies
@cli.group()
def policy() -> None:
    """Policies issued by the insurer."""


@policy.command(name="issue", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("product_id", type=ID)
@click.argument("holder", type=ADDRESS)
@click.option("--coverage", type=AMOUNT, required=True, help="Coverage (asset units), reserved.")
@click.option("--days", type=float, default=365.0, show_default=True, help="Term from now.")
def policy_issue(
    cli_ctx, account, product_id: int, holder: str, coverage: Decimal, days: float
) -> None:
    """Issue a policy of PRODUCT_ID to HOLDER (insurer only)."""
    view = _run(lambda d: ops.issue_policy(d, account, product_id, holder, coverage, days))
    cli_ctx.logger.success(
        f"policy {view.id} issued to {holder}: coverage {view.asset.format(view.reserved)}, "
        f"expires {ops.utc(view.expiry)}"
    )


@policy.command(name="release", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("policy_id", type=ID)
def policy_release(cli_ctx, account, policy_id: int) -> None:
    """Return an expired POLICY_ID's unused coverage to its pool (anyone may)."""
    view, released = _run(lambda d: ops.release_policy(d, account, policy_id))
    cli_ctx.logger.success(
        f"policy {policy_id} released: {view.asset.format(released)} back to its pool"
    )


# ------------------------------------------------------------------------------- bounties
@cli.group()
def bounty() -> None:
    """Research bounties on the committed held-out benchmark."""


@bounty.command(name="create", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.option("--amount", type=AMOUNT, required=True, help="Escrow (ether or token units).")
@click.option(
    "--min-accuracy",
    type=float,
    required=True,
    help="In [0, 1], e.g. 0.95 (of the benchmark's patients).",
)
@click.option("--deadline-hours", type=float, default=72.0, show_default=True)
@click.option("--token", type=ADDRESS, help="ERC-20 address (default: ETH).")
def bounty_create(
    cli_ctx,
    account,
    amount: Decimal,
    min_accuracy: float,
    deadline_hours: float,
    token: str | None,
) -> None:
    """Escrow a bounty for the first private model reaching MIN_ACCURACY on the benchmark."""
    view = _run(
        lambda d: ops.create_bounty(d, account, amount, min_accuracy, deadline_hours, token)
    )
    cli_ctx.logger.success(
        f"bounty {view.id} created: {view.asset.format(view.amount)} escrowed, at least "
        f"{view.min_metric} benchmark patients right, "
        f"deadline {ops.utc(view.deadline)}"
    )


@bounty.command(name="reclaim", cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option()
@click.argument("bounty_id", type=ID)
def bounty_reclaim(cli_ctx, account, bounty_id: int) -> None:
    """Refund BOUNTY_ID's escrow to its sponsor once its deadline has passed.

    `bounty reclaim`, `bounty cancel` and `bounty refund` are the same command; anyone may
    call it and the money only goes to the sponsor. There is no cancel before the deadline:
    ResearchBounty does not offer one, because researchers rely on the escrow.
    """
    view = _run(lambda d: ops.reclaim_bounty(d, account, bounty_id))
    cli_ctx.logger.success(
        f"bounty {bounty_id} reclaimed: {view.asset.format(view.amount)} back to {view.sponsor}"
    )


bounty.add_command(bounty_reclaim, name="cancel")
bounty.add_command(bounty_reclaim, name="refund")


@bounty.command(name="show", cls=ConnectedProviderCommand)
@ape_cli_context()
@click.argument("bounty_id", type=ID, required=False)
def bounty_show(cli_ctx, bounty_id: int | None) -> None:
    """Print BOUNTY_ID (or every bounty)."""

    def text(d: ops.Deployment) -> str:
        views = [d.bounty_record(bounty_id)] if bounty_id else d.bounties()
        return "\n".join(v.describe() for v in views) or "no bounties"

    click.echo(_run(text))
