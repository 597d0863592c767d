"""``zkcare`` / ``python -m prover``: one click group for every command.

Every zkcare error ends in one ``Error: …`` line naming the cause and what to try; no
traceback, no Rust panic text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from prover.exceptions import ZkcareError

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)
_DIR = click.Path(path_type=Path, file_okay=False, exists=True)


class ZkcareClickError(click.ClickException):
    """One clear line for the user instead of a traceback."""


def one_line_errors(fn: F) -> F:
    """Turn zkcare errors (and EZKL's panics, already wrapped) into one-line CLI errors."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ZkcareError as exc:
            raise ZkcareClickError(str(exc).splitlines()[0]) from exc

    return wrapper  # type: ignore[return-value]


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def cli() -> None:
    """zkcare: zero-knowledge proofs of ML inference that settle on-chain."""


@cli.command()
@click.option(
    "--patients",
    metavar="I,J,…",
    help="Held-out patients to claim for (default: 0,2,1,5: two malignant, two benign).",
)
@click.option(
    "--relay-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Loopback port of the demo's relay (0: a free one).",
)
@click.option("--srs", "srs_file", type=_FILE, help="Ceremony SRS (default: dev SRS).")
@one_line_errors
def demo(patients: str | None, relay_port: int, srs_file: Path | None) -> None:
    """Run the main job on a local anvil chain: deploy, insure, claim through the relay, pay;
    a DAO funds a research bounty. Prints a report; anvil and the relay stop at the end."""
    from prover.demo import parse_patients, run_demo

    try:
        report = run_demo(
            parse_patients(patients), relay_port=relay_port, srs_file=srs_file, echo=_say
        )
    except KeyboardInterrupt as exc:
        error = ZkcareClickError("interrupted; anvil and the relay stopped, temp files removed")
        error.exit_code = 130
        raise error from exc
    click.echo(report.render())


@cli.command()
@click.option("--srs", "srs_file", type=_FILE, help="Ceremony SRS (default: dev SRS).")
@one_line_errors
def build(srs_file: Path | None) -> None:
    """Build (or reuse) the built-in diagnostic model's bundle (same path as `model build`)."""
    from prover.models.breast_cancer import build_diagnostic_bundle

    bundle = build_diagnostic_bundle(srs_file=srs_file, progress=_say)
    click.echo(str(bundle.path))


@cli.command()
def train() -> None:
    """Retrain the diagnostic model (deterministic) and rewrite prover/models/breast_cancer/."""
    from prover.models.breast_cancer import train_diagnostic_model
    from prover.zk.hashing import sha256_file

    trained = train_diagnostic_model()
    click.echo(f"held-out accuracy {trained.accuracy:.4f}")
    click.echo(f"{trained.onnx_path} sha256 {sha256_file(trained.onnx_path)}")


# ------------------------------------------------------------------------------------ model


@cli.group()
def model() -> None:
    """Your own ONNX model: build a bundle, prove, verify, show its card."""


@model.command("build")
@click.argument("onnx", type=_FILE)
@click.option("--calibration", required=True, type=_FILE, help="Raw records (CSV or JSON).")
@click.option("--held-out", type=_FILE, help="Records checked for fidelity (default: calibration).")
@click.option("--labels", type=_FILE, help="Labels of the held-out records.")
@click.option("--name", help="Model name (default: the ONNX file's stem).")
@click.option("--preprocess", type=_FILE, help="Preprocessing file (default: none).")
@click.option("--srs", "srs_file", type=_FILE, help="Ceremony SRS (default: dev SRS).")
@click.option(
    "--out",
    "out_root",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where bundles go (default: artifacts/bundles).",
)
@click.option(
    "--task",
    type=click.Choice(["classifier", "regression"]),
    help="Default: classifier for integer labels or several outputs.",
)
@click.option("--tolerance", type=float, help="Regression: largest absolute error allowed.")
@click.option("--ranges", "ranges_file", type=_FILE, help="JSON [[low, high], ...] per feature.")
@click.option("--output-meaning", help="What the output means (recorded in the card).")
@click.option("--output-names", help="Comma-separated names of the outputs (recorded in the card).")
@click.option("--logrows", type=click.IntRange(8, 26), help="Override the chosen logrows.")
@click.option("--input-scale", type=click.IntRange(0, 20), help="Override the input scale.")
@click.option("--param-scale", type=click.IntRange(0, 20), help="Override the parameter scale.")
@click.option("--rebase", type=click.IntRange(1, 100), help="Override scale_rebase_multiplier.")
@click.option("--decomp-legs", type=click.IntRange(1, 8), help="Override decomposition legs.")
@click.option("--cols", type=click.IntRange(1, 16), help="Override num_inner_cols.")
@click.option("--max-logrows", type=click.IntRange(8, 26), default=20, show_default=True)
@click.option(
    "--commit",
    "input_visibility",
    type=click.Choice(["polycommit", "hashed"]),
    default="polycommit",
    show_default=True,
    help="How the proof commits the salted input: polycommit (a KZG commitment in the proof: "
    "smaller keys, faster proofs, less gas) or hashed (a Poseidon hash as a public instance).",
)
@click.option(
    "--decide",
    metavar="'output[K] >= T'",
    help="Compile this payout rule into the circuit ('output[K] >= T' or 'output[K] <= T', "
    "T in model units): the proof's only public output is the 0/1 decision, never a score.",
)
@click.option(
    "--decide-class",
    type=click.IntRange(min=0),
    metavar="K",
    help="Compile 'class K is the arg-max' into the circuit (public output: the 0/1 decision).",
)
@one_line_errors
def model_build(
    onnx: Path,
    calibration: Path,
    held_out: Path | None,
    labels: Path | None,
    name: str | None,
    preprocess: Path | None,
    srs_file: Path | None,
    out_root: Path | None,
    task: str | None,
    tolerance: float | None,
    ranges_file: Path | None,
    output_meaning: str | None,
    output_names: str | None,
    logrows: int | None,
    input_scale: int | None,
    param_scale: int | None,
    rebase: int | None,
    decomp_legs: int | None,
    cols: int | None,
    max_logrows: int,
    input_visibility: str,
    decide: str | None,
    decide_class: int | None,
) -> None:
    """Turn MODEL.onnx into a salted, auto-tuned, checked bundle; prints its directory last.

    With --decide / --decide-class the bundle is a decision model: the rule runs inside the
    circuit and the chain only ever sees whether a claim pays.
    """
    import json

    from prover.models.build import BuildOptions, build_model
    from prover.models.card import check_ranges
    from prover.models.data import load_labels, load_rows
    from prover.models.preprocess import Preprocessor
    from prover.zk.decision import DecisionRule
    from prover.zk.salting import inspect_graph
    from prover.zk.tuning import Choice

    if decide is not None and decide_class is not None:
        raise ZkcareClickError("give one of --decide and --decide-class, not both")
    rule = (
        DecisionRule.parse(decide)
        if decide is not None
        else DecisionRule.arg_max(decide_class)
        if decide_class is not None
        else None
    )
    inputs, _ = inspect_graph(onnx)
    width = Preprocessor.load(preprocess).width if preprocess else sum(i.size for i in inputs)
    cal, header = load_rows(calibration, width)
    held, _ = load_rows(held_out, width) if held_out else (cal, None)
    lab = load_labels(labels, len(held)) if labels else None
    ranges = None
    if ranges_file:
        try:
            ranges = check_ranges(json.loads(ranges_file.read_text()), width, str(ranges_file))
        except ValueError as exc:
            raise ZkcareClickError(f"{ranges_file}: not JSON ({exc})") from exc
    options = BuildOptions(
        name=name,
        task=task,  # type: ignore[arg-type]
        tolerance=tolerance,
        ranges=ranges,
        output_meaning=output_meaning,
        output_names=[n.strip() for n in output_names.split(",")] if output_names else None,
        choice=Choice(input_scale, param_scale, rebase, decomp_legs, cols, logrows),
        max_logrows=max_logrows,
        input_visibility=input_visibility,
        decision=rule,
    )
    bundle = build_model(
        onnx,
        cal,
        held_out=None if held_out is None else held,
        labels=lab,
        preprocess=preprocess,
        options=options,
        feature_names=header,
        held_out_source=str(held_out or calibration),
        srs_file=srs_file,
        out_root=out_root,
        progress=_say,
    )
    card = bundle.card or {}
    fid = card.get("fidelity", {})
    _say(
        f"logrows {bundle.logrows}, proving key {bundle.manifest['sizes']['pk_bytes']:,} B, "
        f"{card.get('instance_layout', {}).get('count')} instances, fidelity "
        f"{'passed' if fid.get('passed') else 'FAILED'} (flips {fid.get('flips')}, "
        f"max error {fid.get('max_abs_error')})"
    )
    if card.get("decision"):
        _say(_decision_line(card["decision"], bundle.input_scale))
    click.echo(str(bundle.path))


def _decision_line(decision: dict[str, Any], scale: int) -> str:
    return (
        f"decision model: pays when {decision['rule']} (compiled into the circuit; public "
        f"output: the 0/1 decision only); held-out margin {decision['margin']:g} model units "
        f"(fixed-point step 2^-{scale} = {2.0**-scale:g})"
    )


def _open(bundle_dir: Path) -> Any:
    from prover.models.build import LoadedModel
    from prover.zk.circuit import load_bundle

    return LoadedModel.open(load_bundle(bundle_dir))


@model.command("prove")
@click.argument("bundle_dir", metavar="BUNDLE", type=_DIR)
@click.option("--input", "input_file", required=True, type=_FILE, help="One record (CSV/JSON).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--salt", help="Salt limbs, comma-separated (default: fresh random salt).")
@one_line_errors
def model_prove(bundle_dir: Path, input_file: Path, out: Path, salt: str | None) -> None:
    """Prove the model on one record; writes EZKL's proof JSON (instances included)."""
    import tempfile

    from prover.exceptions import InvalidSalt
    from prover.models.build import prove_record, read_record, write_proof

    loaded = _open(bundle_dir)
    record = read_record(input_file, loaded.card.width)
    limbs = None
    if salt is not None:
        try:
            limbs = [int(v) for v in salt.split(",")]
        except ValueError as exc:
            raise InvalidSalt("--salt must be comma-separated integers") from exc
    with tempfile.TemporaryDirectory(prefix="zkcare-prove-") as tmp:
        result = prove_record(loaded, record, Path(tmp), salt=limbs)
        write_proof(result, out)
    names = loaded.card.output.names
    shown = ", ".join(f"{n}={v:g}" for n, v in zip(names, result.outputs, strict=True))
    _say(f"commitment 0x{result.commitment:064x}; outputs {shown}")
    click.echo(str(out))


@model.command("verify")
@click.argument("bundle_dir", metavar="BUNDLE", type=_DIR)
@click.argument("proof_file", metavar="PROOF.json", type=_FILE)
@one_line_errors
def model_verify(bundle_dir: Path, proof_file: Path) -> None:
    """Verify a proof against the bundle's verifying key; exit 0 only when valid."""
    from prover.models.build import verify_proof
    from prover.zk.circuit import load_bundle

    if not verify_proof(load_bundle(bundle_dir), proof_file):
        raise ZkcareClickError(f"{proof_file.name}: INVALID proof for this bundle")
    click.echo("valid")


@model.command("show")
@click.argument("bundle_dir", metavar="BUNDLE", type=_DIR)
@one_line_errors
def model_show(bundle_dir: Path) -> None:
    """Print the model card (JSON on stdout; a decision model's rule also on stderr)."""
    from prover.models.build import card_text

    loaded = _open(bundle_dir)
    card = loaded.card
    if card.decision is not None:
        _say(_decision_line(card.decision.model_dump(), loaded.bundle.input_scale))
    click.echo(card_text(card))


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli())


# ------------------------------------------------------------------------------------ bounty


def _submission_options(fn: F) -> F:
    options = [
        click.argument("bounty_id", type=click.IntRange(min=1)),
        click.option("--rpc", required=True, envvar="ZKCARE_RPC_URL", help="JSON-RPC URL."),
        click.option(
            "--deployment",
            type=_FILE,
            help="deployments/<chain-id>.json from `ape run deploy all` (or --contract).",
        ),
        click.option("--contract", help="ResearchBounty address (instead of --deployment)."),
        click.option("--keystore", type=_FILE, help="The researcher's keystore file."),
        click.option("--password-file", type=_FILE, help="File holding the keystore password."),
        click.option("--key-env", help="Name of a variable holding a hex private key (dev)."),
        click.option(
            "--state-dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=Path("bounty-submissions"),
            show_default=True,
            help="Where the submission's state and proof live (keep it: re-runs resume).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _open_submission(
    *,
    bounty_id: int,
    rpc: str,
    deployment: Path | None,
    contract: str | None,
    keystore: Path | None,
    password_file: Path | None,
    key_env: str | None,
    state_dir: Path,
    timeout: float = 120.0,
) -> Any:
    """The :class:`prover.research.Submission` the ``_submission_options`` describe."""
    from prover import research

    if (deployment is None) == (contract is None):
        raise ZkcareClickError("give exactly one of --deployment and --contract")
    address = contract or research.bounty_contract_of(deployment)  # type: ignore[arg-type]
    account = research.load_researcher(keystore, password_file, key_env)
    target = research.Target(rpc, address, bounty_id)
    return research.Submission(target, account, state_dir, echo=_say, timeout=timeout)


@cli.group()
def bounty() -> None:
    """The researcher's side of a research bounty: submit (prove, commit, reveal), status."""


@bounty.command("submit")
@_submission_options
@click.option(
    "--weights",
    required=True,
    type=_FILE,
    help='Your model: JSON {"weights": [30], "bias": b} or a logistic-regression ONNX.',
)
@click.option(
    "--bundle",
    "bundle_dir",
    type=_DIR,
    help="The benchmark's published evaluation bundle (default: the built-in 114 patients).",
)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds per wait.")
@one_line_errors
def bounty_submit(weights: Path, bundle_dir: Path | None, timeout: float, **target: Any) -> None:
    """Prove your model's accuracy on the bounty's benchmark, commit, reveal, follow to the payout.

    Exactly once and resumable: the state lives in --state-dir; re-run the same command after
    any crash or interruption and it goes on where it stopped, never sending twice.
    """
    from prover.models.bounty_eval import build_eval_bundle, weights_of
    from prover.zk.circuit import load_bundle

    params = weights_of(weights)
    submission = _open_submission(timeout=timeout, **target)
    bundle = load_bundle(bundle_dir) if bundle_dir else build_eval_bundle(progress=_say)
    state = submission.run(bundle, params)
    click.echo(submission.describe())
    if state["status"] != "awarded":
        raise ZkcareClickError(state.get("error") or f"submission ended {state['status']}")


@bounty.command("status")
@_submission_options
@one_line_errors
def bounty_status(**target: Any) -> None:
    """Where your submission to BOUNTY_ID stands (from its state file)."""
    click.echo(_open_submission(**target).describe())


# ------------------------------------------------------------------------- index, dashboard

_INDEX_OPTIONS = [
    click.option("--rpc", required=True, envvar="ZKCARE_RPC_URL", help="JSON-RPC URL."),
    click.option("--deployment", required=True, type=_FILE, help="deployments/<chain-id>.json."),
    click.option(
        "--db",
        envvar="ZKCARE_INDEX_DB",
        help="Index store: a SQLite path or postgresql://… (default artifacts/index/…sqlite).",
    ),
]


def _index_options(fn: F) -> F:
    for option in reversed(_INDEX_OPTIONS):
        fn = option(fn)
    return fn


@cli.command()
@_index_options
@click.option("--claim", type=click.IntRange(min=1), help="Trace this claim id instead.")
@click.option("--award", type=click.IntRange(min=1), help="Trace this bounty's award instead.")
@click.option("--csv", "csv_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "json_file", type=click.Path(path_type=Path, dir_okay=False))
@one_line_errors
def audit(
    rpc: str,
    deployment: Path,
    db: str | None,
    claim: int | None,
    award: int | None,
    csv_dir: Path | None,
    json_file: Path | None,
) -> None:
    """Index the deployment's events, then reconcile pools, reserves, bounties and models with
    the chain (exit 1 on a mismatch), or trace one claim/award to its proof. Exports CSV/JSON."""
    from prover.index.service import OpenIndex, as_json, run_audit

    if claim is not None and award is not None:
        raise click.BadOptionUsage("claim", "give --claim or --award, not both")
    index = OpenIndex.open(rpc, deployment, db)
    try:
        synced, result, files = run_audit(
            index, claim=claim, award=award, csv_dir=csv_dir, json_file=json_file
        )
    finally:
        index.close()
    if synced.to_block >= synced.from_block:
        _say(f"indexed blocks {synced.from_block}..{synced.to_block}: {synced.events} new events")
    else:
        _say(f"index up to date at block {synced.to_block}")
    for path in files:
        _say(f"wrote {path}")
    if isinstance(result, dict):
        click.echo(as_json(result))
        return
    click.echo(result.render())
    if not result.ok:
        first = result.failures[0]
        raise ZkcareClickError(
            f"audit found {len(result.failures)} mismatches; first: {first.subject}: "
            f"index {first.indexed}, chain {first.chain}"
        )


@cli.command()
@_index_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True)
@click.option("--relay", "relay_url", help="The relay's base URL (for the relay view).")
@click.option(
    "--relay-token-file",
    type=_FILE,
    help="0600 file holding a relay client token (read; admin for all jobs and health).",
)
@click.option(
    "--tokens",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Token file (sha256 hashes): required beyond loopback.",
)
@click.option("--add-token", metavar="NAME", help="Add a new token to --tokens, print it, exit.")
@click.option(
    "--poll",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds between index syncs.",
)
@one_line_errors
def dashboard(
    rpc: str,
    deployment: Path,
    db: str | None,
    host: str,
    port: int,
    relay_url: str | None,
    relay_token_file: Path | None,
    tokens: Path | None,
    add_token: str | None,
    poll: float,
) -> None:
    """Serve the insurer, DAO, registry and relay views on the index; live as blocks arrive."""
    from prover.dashboard.auth import TokenFile, check_bind, read_relay_token
    from prover.dashboard.auth import add_token as new_token

    if add_token is not None:
        if tokens is None:
            raise click.BadOptionUsage("add_token", "--add-token needs --tokens FILE")
        click.echo(new_token(tokens, add_token))
        _say(f"added token {add_token!r} (its sha256) to {tokens}; the token is shown once")
        return
    token_file = TokenFile.load(tokens) if tokens is not None else None
    check_bind(host, token_file)
    import uvicorn

    from prover.dashboard.app import DashboardConfig, create_app

    relay_token = read_relay_token(relay_token_file) if relay_token_file else None
    config = DashboardConfig(rpc, deployment, db or "", relay_url, relay_token, token_file, poll)
    if not config.db:
        from prover.index.contracts import Watched
        from prover.index.service import default_db

        config.db = default_db(Watched.from_manifest(deployment))
    app = create_app(config)
    _say(f"dashboard on http://{host}:{port} ({'token required' if token_file else 'loopback'})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
