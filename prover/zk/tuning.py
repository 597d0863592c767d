"""Automatic sizing and tuning: the cheapest circuit settings that stay faithful to the model.

The search tries circuit *structures* (rescaling, decomposition legs, inner columns) and, for
each, fixed-point scales from low to high. A candidate is kept when its quantized outputs match
the float model on every held-out example — zero decision flips for a classifier, a maximum
absolute error within the stated tolerance for a regression — and no value overflows the
circuit's decomposition. Its logrows is derived from the rows EZKL lays out (never guessed).
The best few survivors are then set up and proved once to measure what they really cost
(proving-key bytes, prove time); the cheapest wins. Every trial is recorded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from prover.exceptions import EzklError, NoFittingSettings, UnsupportedModel
from prover.zk import ezkl_api
from prover.zk.circuit import CircuitSpec
from prover.zk.fields import felt_from_hex, fixed_to_float

Task = Literal["classifier", "regression", "decision"]
#: One example: a flat list of values per model input (salt limbs included).
Example = Sequence[Sequence[float]]

SCALES = (4, 5, 6, 7, 8, 9, 10, 11, 12)
REBASE = (10, 1)  # 10: no rescaling in shallow graphs (no division tables); 1: rescale every op
LEGS = (2, 3, 4)
COLUMNS = (1, 2)
MIN_LOGROWS = 8
MAX_LOGROWS = 20
#: Rows Halo2 keeps for blinding and the last row (checked by running setup, bumped if short).
RESERVED_ROWS = 16
SCREEN = 16


@dataclass(frozen=True)
class Target:
    """What "faithful" means for this model."""

    task: Task
    tolerance: float = 0.0  # regression: the largest absolute error allowed per output

    def decision(self, outputs: np.ndarray) -> int:
        """A classifier's decision: the arg-max class, or for one output its sign (>= 0); a
        decision circuit's (``decision``) is its one 0/1 output."""
        if self.task == "decision":
            return int(outputs[0] >= 0.5)
        return int(outputs[0] >= 0) if outputs.size == 1 else int(np.argmax(outputs))

    @property
    def counts_flips(self) -> bool:
        """Faithful means zero flips (classifier, decision), not an error bound (regression)."""
        return self.task != "regression"


@dataclass(frozen=True)
class Choice:
    """Settings the user fixed (``None``: searched)."""

    input_scale: int | None = None
    param_scale: int | None = None
    scale_rebase_multiplier: int | None = None
    decomp_legs: int | None = None
    num_inner_cols: int | None = None
    logrows: int | None = None


@dataclass
class Trial:
    """One candidate tried, and what became of it."""

    input_scale: int
    param_scale: int
    scale_rebase_multiplier: int
    decomp_legs: int
    num_inner_cols: int
    rows: int | None = None
    logrows: int | None = None
    status: str = "untried"  # faithful | unfaithful | overflow | too-large | error
    flips: int | None = None
    max_abs_error: float | None = None
    checked: int = 0
    reason: str | None = None
    pk_bytes: int | None = None
    prove_s: float | None = None
    chosen: bool = False

    def spec(self, base: CircuitSpec) -> CircuitSpec:
        """The circuit spec of this trial."""
        return dataclasses.replace(
            base,
            input_scale=self.input_scale,
            param_scale=self.param_scale,
            scale_rebase_multiplier=self.scale_rebase_multiplier,
            decomp_legs=self.decomp_legs,
            num_inner_cols=self.num_inner_cols,
            logrows=self.logrows or base.logrows,
        )


@dataclass
class TuningResult:
    """The chosen spec, its fidelity, and every trial."""

    spec: CircuitSpec
    chosen: Trial
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """The manifest's ``tuning`` section."""
        return {
            "chosen": {
                k: getattr(self.chosen, k)
                for k in (
                    "input_scale",
                    "param_scale",
                    "scale_rebase_multiplier",
                    "decomp_legs",
                    "num_inner_cols",
                    "logrows",
                    "rows",
                    "pk_bytes",
                    "prove_s",
                )
            },
            "criteria": "faithful on held-out data; then smallest proving key, then prove time",
            "trials": [dataclasses.asdict(t) for t in self.trials],
            "seconds": round(self.seconds, 2),
        }


def logrows_for(settings: dict[str, Any]) -> int:
    """The smallest logrows that holds the circuit's rows and its range-check/lookup tables."""
    rows = int(settings["num_rows"])
    tables = [hi - lo + 1 for lo, hi in settings.get("required_range_checks") or []]
    if settings.get("required_lookups"):
        lo, hi = settings["run_args"]["lookup_range"]
        tables.append(int(hi) - int(lo) + 1)
    need = max([rows, *tables]) + RESERVED_ROWS
    return max(MIN_LOGROWS, math.ceil(math.log2(need)))


class _Evaluator:
    """Compiles a candidate and runs the quantized model on examples."""

    def __init__(self, model: Path, workdir: Path) -> None:
        self.model = model
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def prepare(self, trial: Trial, base: CircuitSpec, max_logrows: int) -> Path | None:
        """Write settings + compiled circuit for ``trial``; fills rows/logrows. None if too big."""
        settings = self.dir / "settings.json"
        spec = dataclasses.replace(trial.spec(base), logrows=trial.logrows or MIN_LOGROWS)
        ezkl_api.gen_settings(self.model, settings, spec.run_args())
        data = json.loads(settings.read_text())
        trial.rows = int(data["num_rows"])
        need = logrows_for(data)
        if trial.logrows is not None and trial.logrows < need:
            trial.status, trial.reason = "too-large", f"needs logrows {need}"
            return None
        trial.logrows = trial.logrows or need
        if trial.logrows > max_logrows:
            trial.status, trial.reason = "too-large", f"needs logrows {trial.logrows}"
            return None
        data["run_args"]["logrows"] = trial.logrows
        settings.write_text(json.dumps(data))
        compiled = self.dir / "model.compiled"
        ezkl_api.compile_circuit(self.model, compiled, settings)
        return compiled

    def outputs(self, compiled: Path, example: Example, scales: Sequence[int]) -> np.ndarray:
        """The quantized model's outputs (decoded to floats) on one example; ``scales``: the
        fixed-point scale of each output tensor (EZKL's ``model_output_scales``)."""
        self._n += 1
        data = self.dir / f"input-{self._n}.json"
        data.write_text(json.dumps({"input_data": [[float(v) for v in x] for x in example]}))
        try:
            witness = ezkl_api.gen_witness(data, compiled, None)
        finally:
            data.unlink(missing_ok=True)
        groups = witness["outputs"]
        if len(groups) != len(scales):
            raise EzklError("gen_witness", f"{len(groups)} outputs for {len(scales)} scales")
        return np.array(
            [
                fixed_to_float(felt_from_hex(h), int(scale))
                for g, scale in zip(groups, scales, strict=True)
                for h in g
            ]
        )


def _candidates(choice: Choice) -> list[Trial]:
    def options(value: int | None, default: Sequence[int]) -> Sequence[int]:
        return (value,) if value is not None else default

    out = []
    for rebase in options(choice.scale_rebase_multiplier, REBASE):
        for legs in options(choice.decomp_legs, LEGS):
            for cols in options(choice.num_inner_cols, COLUMNS):
                for scale in options(choice.input_scale, SCALES):
                    out.append(
                        Trial(
                            input_scale=scale,
                            param_scale=choice.param_scale or scale,
                            scale_rebase_multiplier=rebase,
                            decomp_legs=legs,
                            num_inner_cols=cols,
                            logrows=choice.logrows,
                        )
                    )
    return out


def _judge(
    trial: Trial,
    ev: _Evaluator,
    compiled: Path,
    base: CircuitSpec,
    screen: Sequence[Example],
    held_out: Sequence[Example],
    reference: np.ndarray,
    target: Target,
) -> None:
    settings = json.loads((ev.dir / "settings.json").read_text())
    out_scale = [int(s) for s in settings["model_output_scales"]]
    try:
        for example in screen:
            ev.outputs(compiled, example, out_scale)
    except EzklError as exc:
        trial.status, trial.reason = "overflow", exc.detail[:160]
        return
    flips, worst = 0, 0.0
    order = list(range(len(held_out)))
    for n, i in enumerate(order):
        try:
            got = ev.outputs(compiled, held_out[i], out_scale)
        except EzklError as exc:
            trial.status, trial.reason = "overflow", exc.detail[:160]
            return
        want = reference[i]
        if got.shape != want.shape:
            trial.status = "error"
            trial.reason = f"circuit gives {got.size} outputs, the model {want.size}"
            return
        worst = max(worst, float(np.max(np.abs(got - want))))
        if target.counts_flips:
            flips += int(target.decision(got) != target.decision(want))
        trial.checked = n + 1
        bad = flips > 0 if target.counts_flips else worst > target.tolerance
        if bad and n + 1 >= min(SCREEN, len(order)):
            break  # unfaithful: no need to look at the rest
    trial.flips = flips if target.counts_flips else None
    trial.max_abs_error = round(worst, 6)
    faithful = flips == 0 if target.counts_flips else worst <= target.tolerance
    trial.status = "faithful" if faithful and trial.checked == len(order) else "unfaithful"


def search(
    model: Path,
    base: CircuitSpec,
    *,
    screen: Sequence[Example],
    held_out: Sequence[Example],
    reference: np.ndarray,
    target: Target,
    workdir: Path,
    srs_for: Callable[[int], Path],
    choice: Choice | None = None,
    max_logrows: int = MAX_LOGROWS,
    finalists: int = 3,
    progress: Callable[[str], None] | None = None,
) -> TuningResult:
    """Find the cheapest faithful settings for the (salted) ``model``.

    Args:
        model: the ONNX graph to prove (already salted).
        base: visibility and other fixed parts of the spec.
        screen: examples that must not overflow (calibration rows, extremes); outputs unchecked.
        held_out: examples whose quantized outputs are compared with ``reference``.
        reference: the float model's outputs on ``held_out``, one flat row per example.
        target: classifier (zero flips) or regression (within tolerance).
        workdir: scratch space (removed afterwards).
        srs_for: an SRS file for a logrows (finalists are set up and proved once).
        choice: settings fixed by the user.
        max_logrows: the largest circuit accepted.
        finalists: how many faithful structures are measured by a real setup and proof.
    """
    say = progress or (lambda _m: None)
    start = time.perf_counter()
    choice = choice or Choice()
    trials = _candidates(choice)
    ev = _Evaluator(model, workdir)
    passed: list[Trial] = []
    passed_legs: dict[tuple[int, int], int] = {}  # (rebase, cols) -> legs that passed
    dead: set[tuple[int, int, int]] = set()  # overflowed: higher scales overflow too
    try:
        for trial in trials:
            structure = (trial.scale_rebase_multiplier, trial.decomp_legs, trial.num_inner_cols)
            pair = (trial.scale_rebase_multiplier, trial.num_inner_cols)
            if pair in passed_legs and trial.decomp_legs >= passed_legs[pair]:
                trial.status, trial.reason = "skipped", "a cheaper setting of this structure passed"
                continue
            if structure in dead:
                trial.status, trial.reason = "skipped", "a lower scale overflowed"
                continue
            try:
                compiled = ev.prepare(trial, base, max_logrows)
            except EzklError as exc:
                unsupported = re.search(r"Unimplemented\((\w+)\)", exc.detail)
                if unsupported:
                    raise UnsupportedModel(
                        model,
                        f"EZKL {ezkl_api.EZKL_VERSION} does not support the ONNX operator "
                        f"{unsupported.group(1)}; replace it or export the model without it",
                    ) from exc
                trial.status, trial.reason = "error", exc.detail[:160]
                dead.add(structure)
                continue
            if compiled is None:
                continue
            _judge(trial, ev, compiled, base, screen, held_out, reference, target)
            say(
                f"  scale {trial.input_scale} rebase {trial.scale_rebase_multiplier} "
                f"legs {trial.decomp_legs} cols {trial.num_inner_cols}: logrows {trial.logrows}, "
                f"{trial.status}"
            )
            if trial.status == "faithful":
                passed.append(trial)
                passed_legs[pair] = trial.decomp_legs
            elif trial.status in ("overflow", "too-large"):
                dead.add(structure)
        if not passed:
            raise _no_fit(base.name, trials, target, max_logrows)
        passed.sort(key=lambda t: (t.logrows or 0, t.num_inner_cols, t.decomp_legs, t.input_scale))
        shortlist: list[Trial] = []
        seen: set[tuple[int, int]] = set()
        for t in passed:
            if (t.logrows or 0, t.num_inner_cols) not in seen:
                seen.add((t.logrows or 0, t.num_inner_cols))
                shortlist.append(t)
        for t in shortlist[:finalists]:
            _measure(t, ev, base, held_out[0] if held_out else screen[0], srs_for, max_logrows)
            say(
                f"  finalist logrows {t.logrows} cols {t.num_inner_cols}: pk {t.pk_bytes} B, "
                f"prove {t.prove_s} s"
            )
        measured = [t for t in shortlist[:finalists] if t.pk_bytes is not None]
        if not measured:
            raise _no_fit(base.name, trials, target, max_logrows)
        best = min(measured, key=lambda t: (t.pk_bytes or 0, t.prove_s or 0.0))
        best.chosen = True
        return TuningResult(best.spec(base), best, trials, time.perf_counter() - start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _measure(
    trial: Trial,
    ev: _Evaluator,
    base: CircuitSpec,
    example: Example,
    srs_for: Callable[[int], Path],
    max_logrows: int,
) -> None:
    """Set up and prove once; bump logrows if Halo2 runs out of rows."""
    while True:
        compiled = ev.prepare(trial, base, max_logrows)
        if compiled is None:
            return
        data = ev.dir / "measure-input.json"
        data.write_text(json.dumps({"input_data": [[float(v) for v in x] for x in example]}))
        srs = srs_for(trial.logrows or MIN_LOGROWS)
        try:
            ezkl_api.gen_witness(data, compiled, ev.dir / "measure-witness.json")
            ezkl_api.setup(compiled, ev.dir / "vk.key", ev.dir / "pk.key", srs)
            t0 = time.perf_counter()
            ezkl_api.prove(
                ev.dir / "measure-witness.json", compiled, ev.dir / "pk.key", ev.dir / "p.json", srs
            )
        except EzklError as exc:
            if "NotEnoughRowsAvailable" in exc.detail and (trial.logrows or 0) < max_logrows:
                trial.logrows = (trial.logrows or MIN_LOGROWS) + 1
                continue
            trial.status, trial.reason = "error", exc.detail[:160]
            return
        trial.prove_s = round(time.perf_counter() - t0, 3)
        trial.pk_bytes = (ev.dir / "pk.key").stat().st_size
        return


def _no_fit(name: str, trials: list[Trial], target: Target, max_logrows: int) -> NoFittingSettings:
    sized = [t for t in trials if t.logrows is not None and t.status != "too-large"]
    if not sized:
        need = min((t.reason or "" for t in trials if t.status == "too-large"), default="")
        return NoFittingSettings(
            name,
            f"too large for every setting tried ({need or 'no candidate compiled'}; "
            f"limit logrows {max_logrows})",
            "try --max-logrows with a larger value, or a smaller model",
        )
    unfaithful = [t for t in trials if t.status == "unfaithful"]
    if unfaithful:
        best = min(unfaithful, key=lambda t: (t.flips or 0, t.max_abs_error or 0.0))
        what = (
            f"{best.flips} decision flip(s)"
            if target.counts_flips
            else f"max error {best.max_abs_error} > tolerance {target.tolerance}"
        )
        return NoFittingSettings(
            name,
            f"no setting tried is faithful on the held-out data (best: {what} at scale "
            f"{best.input_scale})",
            "try a larger --input-scale, --tolerance for a regression, or --max-logrows",
        )
    errors = [t.reason for t in trials if t.reason]
    return NoFittingSettings(
        name,
        f"every setting failed ({errors[0] if errors else 'unknown'})",
        "check the model's operators are supported by EZKL",
    )
