"""``python -m prover``: the zkcare command line (demo, build, train)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from prover.exceptions import ZkcareError


class ZkcareClickError(click.ClickException):
    """One clear line for the user instead of a traceback."""


@click.group()
def cli() -> None:
    """zkcare: zero-knowledge proofs of ML inference that settle on-chain."""


@cli.command()
@click.option("--patient", default=0, show_default=True, help="Held-out patient index.")
@click.option(
    "--srs",
    "srs_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Ceremony SRS file (default: a cached dev SRS, not for production).",
)
def demo(patient: int, srs_file: Path | None) -> None:
    """Prove a held-out patient's diagnosis and verify it on a local anvil chain."""
    from prover.demo import run_demo

    try:
        report = run_demo(patient, srs_file=srs_file, echo=lambda m: click.echo(m, err=True))
    except (ZkcareError, IndexError) as exc:
        raise ZkcareClickError(str(exc)) from exc
    click.echo(report.render())


@cli.command()
@click.option(
    "--srs",
    "srs_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Ceremony SRS file (default: a cached dev SRS, not for production).",
)
def build(srs_file: Path | None) -> None:
    """Build (or reuse) the diagnostic model's circuit bundle and verifier."""
    from prover.diagnosis import build_diagnostic_bundle

    try:
        bundle = build_diagnostic_bundle(
            srs_file=srs_file, progress=lambda m: click.echo(m, err=True)
        )
    except ZkcareError as exc:
        raise ZkcareClickError(str(exc)) from exc
    click.echo(str(bundle.path))


@cli.command()
def train() -> None:
    """Retrain the diagnostic model (deterministic) and rewrite prover/models/."""
    from prover.models.breast_cancer import sha256_file, train_diagnostic_model

    trained = train_diagnostic_model()
    click.echo(f"held-out accuracy {trained.accuracy:.4f}")
    click.echo(f"{trained.onnx_path} sha256 {sha256_file(trained.onnx_path)}")


if __name__ == "__main__":
    sys.exit(cli())
