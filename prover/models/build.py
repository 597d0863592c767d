"""The one path every model takes: ONNX + data -> salted, tuned, checked circuit bundle -> proofs.

:func:`build_model` salts the graph (:mod:`prover.zk.salting`), searches the cheapest faithful
settings (:mod:`prover.zk.tuning`), builds the bundle (:mod:`prover.zk.circuit`) and, before
the bundle is renamed into place, proves one held-out record for real to read the instance
layout, re-checks fidelity on all held-out data with the final circuit, and writes the model
card into the manifest. :func:`prove_record` and :func:`verify_proof` are what
``model prove`` / ``model verify`` and the relay's provers run. The built-in models
(:mod:`prover.models.breast_cancer`) call exactly these functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from prover.exceptions import (
    FidelityCheckFailed,
    InputShapeError,
    InvalidInput,
    ProofError,
    UnsupportedModel,
)
from prover.models.card import (
    RANGE_MARGIN,
    DecisionSpec,
    Fidelity,
    InputSpec,
    InstanceLayout,
    ModelCard,
    OutputSpec,
    PreprocessingSpec,
    ranges_from,
)
from prover.models.preprocess import Preprocessor
from prover.paths import ARTIFACTS, partial_path
from prover.zk import proof as proofs
from prover.zk import tuning
from prover.zk.circuit import Bundle, CircuitSpec, ProgressFn, build_bundle
from prover.zk.commitment import (
    MAX_SALT_LIMB,
    PROOF_COMMITMENT_INDEX,
    SALT_LIMB_BITS,
    check_salt,
    commit_input,
    commitment_site,
    new_salt,
    proof_commitment,
    salt_limbs_for,
)
from prover.zk.decision import DecisionRule, decide_graph
from prover.zk.ezkl_api import EZKL_VERSION, first_line
from prover.zk.fields import fixed_to_float
from prover.zk.hashing import sha256_file
from prover.zk.salting import SaltedGraph, TensorInfo, inspect_graph, salt_graph
from prover.zk.srs import ceremony_srs, dev_srs

#: Calibration rows used to screen for overflow (beyond these, only the extremes are added).
SCREEN_ROWS = 32


@dataclass(frozen=True)
class BuildOptions:
    """Everything ``model build`` lets a user decide (``None``: chosen automatically)."""

    name: str | None = None
    task: tuning.Task | None = None
    tolerance: float | None = None
    ranges: list[tuple[float, float]] | None = None
    output_meaning: str | None = None
    output_names: list[str] | None = None
    choice: tuning.Choice = tuning.Choice()
    max_logrows: int = tuning.MAX_LOGROWS
    #: ``polycommit`` (KZG commitment in the proof: the smallest keys, fastest proofs and least
    #: gas, ``./zk bench sweep``) or ``hashed`` (a Poseidon hash as a public instance).
    input_visibility: str = "polycommit"
    param_visibility: str = "fixed"
    #: Compile this rule into the circuit: its only public output is the 0/1 decision.
    #: Out of ``repr`` (which keys the caches) so plain builds keep their keys.
    decision: DecisionRule | None = field(default=None, repr=False)


def model_name(onnx: Path, given: str | None) -> str:
    """A bundle/contract-safe model name (``[a-z0-9_]``, starting with a letter)."""
    raw = given if given is not None else onnx.stem
    name = re.sub(r"[^a-z0-9_]+", "_", raw.lower()).strip("_")
    if not name or not name[0].isalpha() or len(name) > 48:
        raise InvalidInput(
            f"model name {raw!r}: use 1-48 letters, digits or _ starting with a letter (--name)"
        )
    return name


def _float_outputs(onnx: Path, info: TensorInfo, rows: np.ndarray) -> np.ndarray:
    """The float model's outputs on model-space rows (one flat output row per record)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise UnsupportedModel(onnx, f"onnxruntime cannot load it ({first_line(exc)})") from exc
    out = []
    for row in rows:
        x = np.asarray(row, dtype=np.float32).reshape(info.shape)
        try:
            values = session.run(None, {info.name: x})
        except Exception as exc:
            raise UnsupportedModel(onnx, f"onnxruntime cannot run it ({first_line(exc)})") from exc
        out.append(np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]))
    return np.asarray(out)


def _example(
    row: Sequence[float], limbs: int, salt: Sequence[int] | None = None
) -> list[list[float]]:
    """One EZKL input: the row, then the salt (the largest limbs when none is given)."""
    values = salt if salt is not None else [MAX_SALT_LIMB] * limbs
    return [[float(v) for v in row] + [float(s) for s in values]]


def _infer_task(labels: np.ndarray | None, outputs: int) -> tuning.Task:
    if labels is not None:
        integral = bool(np.all(np.equal(np.mod(labels, 1), 0)))
        classes = bool(np.all((labels >= 0) & (labels < max(2, outputs))))
        return "classifier" if integral and classes else "regression"
    return "classifier" if outputs > 1 else "regression"


def _decisions(target: tuning.Target, outputs: np.ndarray) -> np.ndarray:
    return np.array([target.decision(o) for o in outputs])


def build_model(
    onnx: Path,
    calibration: np.ndarray,
    *,
    held_out: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    preprocess: Path | None = None,
    options: BuildOptions = BuildOptions(),
    feature_names: Sequence[str] | None = None,
    held_out_source: str = "calibration data",
    srs_file: Path | None = None,
    out_root: Path | None = None,
    export_verifier_to: Path | None = None,
    progress: ProgressFn | None = None,
) -> Bundle:
    """Turn a user's ONNX model into a checked circuit bundle with a model card.

    Args:
        onnx: the model (one float input, static shape; a symbolic batch dimension becomes 1).
        calibration: raw records ``[n, width]`` (before preprocessing); they size the circuit
            and, unless ``options.ranges`` is given, set the allowed ranges.
        held_out: raw records the quantized model must match the float one on (default: the
            calibration records).
        labels: the held-out records' labels (classes or targets), for accuracy and the task.
        preprocess: a preprocessing file (:mod:`prover.models.preprocess`); ``None``: identity.
        options: name, task, tolerance, ranges, output meaning and the settings' overrides.
    """
    say = progress or (lambda _m: None)
    name = model_name(onnx, options.name)
    inputs, outputs = inspect_graph(onnx)
    if len(inputs) != 1:
        raise UnsupportedModel(
            onnx,
            f"the graph has {len(inputs)} inputs; zkcare binds one committed input per proof, "
            "so export the model with its inputs merged into one tensor",
        )
    info = inputs[0]
    if options.input_visibility not in ("polycommit", "hashed"):
        raise InvalidInput(
            f"input visibility {options.input_visibility!r}: use polycommit or hashed "
            "(patient inputs are always committed)"
        )
    limbs = salt_limbs_for(options.input_visibility)
    pre = (
        Preprocessor.load(preprocess)
        if preprocess
        else Preprocessor.identity(info.size, feature_names)
    )
    if pre.width != info.size:
        raise InputShapeError(
            str(preprocess),
            f"preprocesses {pre.width} features; the model input {info.name} "
            f"{list(info.shape)} takes {info.size}",
        )
    calibration = np.asarray(calibration, dtype=np.float64)
    if calibration.ndim != 2 or calibration.shape[1] != info.size:
        raise InputShapeError(
            "calibration data",
            f"records have {calibration.shape[-1]} values; the model takes "
            f"{info.size} ({info.name} {list(info.shape)})",
        )
    held = calibration if held_out is None else np.asarray(held_out, dtype=np.float64)
    if held.ndim != 2 or held.shape[1] != info.size:
        raise InputShapeError(
            "held-out data", f"records have {held.shape[-1]} values; the model takes {info.size}"
        )
    if labels is not None and len(labels) != len(held):
        raise InputShapeError("labels", f"{len(labels)} labels for {len(held)} held-out records")
    ranges = options.ranges or ranges_from(calibration)
    ranges_source = (
        "given" if options.ranges else f"calibration min/max ± {RANGE_MARGIN:.0%} of the span"
    )
    names = list(feature_names or pre.feature_names)
    if len(names) != info.size:
        names = [f"x{i}" for i in range(info.size)]

    held_model = pre.apply(held)
    say(f"{name}: float reference on {len(held)} held-out records")
    scores = _float_outputs(onnx, info, held_model)
    rule = options.decision
    if rule is not None:
        rule.check(scores.shape[1])
        if options.task is not None or options.tolerance is not None:
            raise InvalidInput(
                "--task/--tolerance do not apply to a decision model: its fidelity is zero "
                "decision flips against the float rule"
            )
        reference = rule.decide(scores).astype(np.float64).reshape(-1, 1)
    else:
        reference = scores
    n_out = reference.shape[1]
    task = "decision" if rule is not None else options.task or _infer_task(labels, n_out)
    tolerance = options.tolerance
    if task == "regression" and tolerance is None:
        span = float(np.ptp(reference)) if reference.size else 0.0
        tolerance = round(max(0.01 * span, 1e-3), 6)
    target = tuning.Target(task, tolerance or 0.0)

    work = Path(
        tempfile.mkdtemp(prefix=f"zkcare-{name}-", dir=ARTIFACTS if ARTIFACTS.is_dir() else None)
    )
    try:
        graph = onnx
        if rule is not None:  # decide first, then salt: the commitment still covers the input
            graph = decide_graph(onnx, work / f"{name}.decided.onnx", rule)
        salted = salt_graph(graph, work / f"{name}.salted.onnx", limbs)
        lows = np.array([r[0] for r in ranges])
        highs = np.array([r[1] for r in ranges])
        screen_raw = np.vstack([calibration[:SCREEN_ROWS], lows, highs])
        screen = [_example(r, limbs) for r in pre.apply(screen_raw)]
        held_examples = [_example(r, limbs) for r in held_model]
        base = CircuitSpec(
            name=name,
            input_visibility=options.input_visibility,  # type: ignore[arg-type]
            param_visibility=options.param_visibility,  # type: ignore[arg-type]
        )

        def srs_for(logrows: int) -> Path:
            return (ceremony_srs(srs_file, logrows) if srs_file else dev_srs(logrows)).path

        pre_file = work / "preprocess.json"
        pre_file.write_text(pre.to_json())
        key_extra = {
            "source_onnx": sha256_file(onnx),
            "preprocess": sha256_file(pre_file),
            "held_out": _digest(held),
            "labels": None if labels is None else _digest(np.asarray(labels)),
            "options": repr(options),
        }
        if rule is not None:
            key_extra["decision"] = repr(rule)
        search_key = hashlib.sha256(
            json.dumps(
                {
                    **key_extra,
                    "salted": sha256_file(salted.path),
                    "screen": _digest(np.asarray([ex[0] for ex in screen])),
                    "target": repr(target),
                    "srs": sha256_file(srs_file) if srs_file else "dev",
                    "ezkl": EZKL_VERSION,
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()[:24]
        cached = ARTIFACTS / "tuning" / f"{name}-{search_key}.json"
        if cached.is_file():
            say(f"{name}: circuit settings from the recorded search ({cached.name})")
            saved = json.loads(cached.read_text())
            spec = CircuitSpec(**saved["spec"])
            record = saved["record"]
        else:
            say(
                f"{name}: searching circuit settings "
                f"({options.input_visibility} input of {info.size} + {limbs} salt limbs)"
            )
            result = tuning.search(
                salted.path,
                base,
                screen=screen,
                held_out=held_examples,
                reference=reference,
                target=target,
                workdir=work / "search",
                srs_for=srs_for,
                choice=options.choice,
                max_logrows=options.max_logrows,
                progress=say,
            )
            spec, record = result.spec, result.record()
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = partial_path(cached)
            tmp.write_text(json.dumps({"spec": dataclasses.asdict(spec), "record": record}))
            tmp.replace(cached)

        def finish(bundle: Bundle) -> tuple[dict[str, Any], list[str]]:
            shutil.copyfile(pre_file, bundle.path / "preprocess.json")
            shutil.copyfile(onnx, bundle.path / "source.onnx")
            card = _card(
                bundle,
                name,
                salted,
                pre,
                names,
                ranges,
                ranges_source,
                held_model,
                reference,
                labels,
                target,
                held_out_source,
                options,
                say,
                scores,
            )
            return {"card": card_json(card), "tuning": record}, [
                "preprocess.json",
                "source.onnx",
                "sample_proof.json",
            ]

        say(f"{name}: building the bundle")
        return build_bundle(
            salted.path,
            spec,
            [[v for ex in screen for v in ex[0]]],
            srs_file=srs_file,
            out_root=out_root,
            export_verifier_to=export_verifier_to,
            key_extra=key_extra,
            finish=finish,
            progress=say,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


def _card(
    bundle: Bundle,
    name: str,
    salted: SaltedGraph,
    pre: Preprocessor,
    feature_names: list[str],
    ranges: list[tuple[float, float]],
    ranges_source: str,
    held_model: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    target: tuning.Target,
    held_out_source: str,
    options: BuildOptions,
    say: ProgressFn,
    scores: np.ndarray,
) -> ModelCard:
    """Prove one held-out record for real, re-check fidelity, and write the card."""
    info, out = salted.inputs[0], salted.outputs
    n_out = reference.shape[1]
    say(f"{name}: sample proof and fidelity on {len(held_model)} held-out records")
    limbs = salted.salt_limbs
    salt = new_salt(limbs)
    where: Literal["instance", "proof"]
    workdir = bundle.path / ".scratch"
    workdir.mkdir()
    try:
        input_json = proofs.write_inputs(
            workdir / "input.json", _example(held_model[0], limbs, salt)
        )
        witness = proofs.gen_witness(bundle, input_json, workdir / "witness.json")
        proof = proofs.prove(bundle, witness, bundle.path / "sample_proof.json")
        if not proofs.verify(bundle, proof):
            raise ProofError(f"model {name}: the sample proof does not verify")
        expected = commit_input(bundle, held_model[0], salt)
        count = len(proof.instances)
        output_indexes = list(range(count - n_out, count))
        if commitment_site(bundle.input_visibility) == "proof":
            # The registry hashes the proof's first G1 point: it must be the salted input's.
            if proof_commitment(proof.proof) != expected:
                raise ProofError(
                    f"model {name}: the proof does not start with the salted input's KZG commitment"
                )
            where, commitment_index = "proof", PROOF_COMMITMENT_INDEX
            if count != n_out or len(witness.outputs) != n_out:
                raise ProofError(
                    f"model {name}: proof instances ({count}) are not its {n_out} outputs"
                )
        else:
            if expected not in proof.instances:
                raise ProofError(f"model {name}: the proof does not expose the salted commitment")
            where, commitment_index = "instance", proof.instances.index(expected)
            if commitment_index in output_indexes or len(witness.outputs) != n_out:
                raise ProofError(
                    f"model {name}: proof instances ({count}) do not hold "
                    f"1 commitment + {n_out} outputs"
                )
        scales = bundle.output_scales
        quantized = []
        for i, row in enumerate(held_model):
            path = proofs.write_inputs(workdir / f"h{i}.json", _example(row, limbs))
            w = proofs.gen_witness(bundle, path, workdir / "h.json")
            quantized.append([fixed_to_float(v, s) for v, s in zip(w.outputs, scales, strict=True)])
            path.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    q = np.asarray(quantized)
    max_err = float(np.max(np.abs(q - reference))) if q.size else 0.0
    flips = None
    float_acc = quant_acc = None
    if target.counts_flips:
        fd, qd = _decisions(target, reference), _decisions(target, q)
        flips = int(np.sum(fd != qd))
        if labels is not None and target.task == "classifier":
            lab = np.asarray(labels).astype(int)
            float_acc = round(float(np.mean(fd == lab)), 6)
            quant_acc = round(float(np.mean(qd == lab)), 6)
        passed = flips == 0
    else:
        passed = max_err <= target.tolerance
    out_shape = list(out[0].shape) if len(out) == 1 else [n_out]
    rule = options.decision
    decision = None
    if rule is not None:
        score_names = options.output_names or [f"output[{k}]" for k in range(scores.shape[1])]
        if len(score_names) != scores.shape[1]:
            raise InvalidInput(
                f"--output-names gives {len(score_names)} names for {scores.shape[1]} outputs"
            )
        margins = rule.margins(scores)
        decision = DecisionSpec(
            comparison=rule.kind,
            output=rule.output,
            output_name=score_names[rule.output],
            threshold=rule.threshold,
            rule=rule.describe(),
            margin=round(float(np.min(margins)), 6) if margins.size else 0.0,
        )
        names = ["decision"]
    else:
        names = options.output_names or [
            f"{out[0].name}[{k}]" if n_out > 1 else out[0].name for k in range(n_out)
        ]
    if len(names) != n_out:
        raise InvalidInput(f"--output-names gives {len(names)} names for {n_out} outputs")
    meaning = options.output_meaning or (
        f"1 if {decision.rule} else 0 (the rule runs inside the circuit; the scores stay private)"
        if decision is not None
        else "class scores; the decision is the arg-max class"
        if target.task == "classifier" and n_out > 1
        else "score; the decision is score >= 0"
        if target.task == "classifier"
        else "regression estimate"
    )
    return ModelCard(
        name=name,
        input=InputSpec(
            name=info.name,
            shape=list(info.shape),
            feature_names=feature_names,
            ranges=ranges,
            ranges_source=ranges_source,
        ),
        preprocessing=PreprocessingSpec(
            kind=pre.kind, version=pre.version, sha256=sha256_file(bundle.path / "preprocess.json")
        ),
        output=OutputSpec(name=out[0].name, shape=out_shape, names=names, meaning=meaning),
        salt={
            "limbs": limbs,
            "bits_per_limb": SALT_LIMB_BITS,
            "entropy_bits": limbs * SALT_LIMB_BITS,
        },
        instance_layout=InstanceLayout(
            count=count,
            commitment=where,
            commitment_index=commitment_index,
            output_indexes=output_indexes,
            output_scale=bundle.output_scale,
            checked_against="sample_proof.json",
            output_scales=scales if len(set(scales)) > 1 else None,
        ),
        fidelity=Fidelity(
            task=target.task,
            held_out=len(held_model),
            held_out_source=held_out_source,
            flips=flips,
            max_abs_error=round(max_err, 6),
            tolerance=target.tolerance if target.task == "regression" else None,
            float_accuracy=float_acc,
            quantized_accuracy=quant_acc,
            passed=passed,
        ),
        decision=decision,
    )


# ---------------------------------------------------------------------------------- proving


@dataclass(frozen=True)
class ModelProof:
    """A proof of a model's outputs on one record. ``salt`` stays with the prover."""

    proof: proofs.Proof
    commitment: int
    outputs: tuple[float, ...]
    salt: tuple[int, ...]


@dataclass(frozen=True)
class LoadedModel:
    """A bundle with its card and its own preprocessing (never another model's)."""

    bundle: Bundle
    card: ModelCard
    preprocessor: Preprocessor

    @classmethod
    def open(cls, bundle: Bundle) -> LoadedModel:
        """Read the card and the bundle's preprocessing file, checking its hash."""
        card = ModelCard.of(bundle)
        path = bundle.path / card.preprocessing.file
        if not path.is_file() or sha256_file(path) != card.preprocessing.sha256:
            raise FidelityCheckFailed(
                bundle.path, f"its {card.preprocessing.file} is missing or altered", "a rebuild"
            )
        return cls(bundle, card, Preprocessor.load(path))


def prove_record(
    model: LoadedModel | Bundle,
    record: Sequence[float],
    workdir: Path,
    *,
    salt: Sequence[int] | None = None,
) -> ModelProof:
    """Validate ``record`` against the card, preprocess it, prove, check the commitment."""
    loaded = model if isinstance(model, LoadedModel) else LoadedModel.open(model)
    bundle, card = loaded.bundle, loaded.card
    values = card.check_record(record)
    z = loaded.preprocessor.transform(values)
    limbs = card.salt_limbs
    s = check_salt(salt, limbs) if salt is not None else new_salt(limbs)
    workdir.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(6)
    input_json = proofs.write_inputs(workdir / f"input-{tag}.json", _example(z, limbs, s))
    try:
        witness = proofs.gen_witness(bundle, input_json, workdir / f"witness-{tag}.json")
    finally:
        input_json.unlink(missing_ok=True)  # raw features do not outlive witness generation
    layout = card.instance_layout
    try:
        expected = commit_input(bundle, z, s)
        if layout.commitment == "instance" and witness.input_commitment != expected:
            raise ProofError(
                f"witness commitment {witness.input_commitment} != off-circuit {expected}"
            )
        proof = proofs.prove(bundle, witness, workdir / f"proof-{tag}.json")
    finally:
        witness.path.unlink(missing_ok=True)
    if (
        len(proof.instances) != layout.count
        or layout.commitment_of(proof.proof, proof.instances) != expected
    ):
        raise ProofError(
            f"model {card.name}: the proof's commitment or instances do not match its card"
        )
    outputs = tuple(
        fixed_to_float(proof.instances[i], scale)
        for i, scale in zip(layout.output_indexes, layout.scales(), strict=True)
    )
    return ModelProof(proof, expected, outputs, s)


def verify_proof(bundle: Bundle, proof_file: Path) -> bool:
    """Verify an EZKL proof file against the bundle's verifying key (off-chain)."""
    return proofs.verify(bundle, proofs.Proof.load(proof_file))


def write_proof(result: ModelProof, out: Path) -> Path:
    """Move the proof JSON (EZKL's format, instances included) to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(result.proof.path, out)
    return out


def read_record(path: Path, width: int) -> list[float]:
    """The single record in an input file."""
    from prover.models.data import load_rows

    rows, _ = load_rows(path, width)
    if len(rows) != 1:
        raise InputShapeError(str(path), f"holds {len(rows)} records; prove takes one")
    return [float(v) for v in rows[0]]


def card_json(card: ModelCard) -> dict[str, Any]:
    """The card as the manifest stores it; a plain model's has no ``decision`` key at all, so
    readers that predate decision models still accept it."""
    data = card.model_dump(mode="json")
    if data.get("decision") is None:
        data.pop("decision", None)
    if data["instance_layout"].get("output_scales") is None:
        data["instance_layout"].pop("output_scales", None)
    return data


def card_text(card: ModelCard) -> str:
    """``model show``: the card as JSON."""
    return json.dumps(card_json(card), indent=2)


def check_bundle(bundle: Bundle) -> ModelCard:
    """What ``model register`` insists on: a card whose fidelity check passed and whose layout
    matches a real proof of this bundle (its sample proof, verified again here)."""
    override = "--unsafe-skip-bundle-checks"
    card = ModelCard.of(bundle)
    if not card.fidelity.passed:
        what = (
            f"{card.fidelity.flips} decision flip(s)"
            if card.fidelity.task != "regression"
            else f"max error {card.fidelity.max_abs_error} > tolerance {card.fidelity.tolerance}"
        )
        raise FidelityCheckFailed(bundle.path, f"its fidelity check failed ({what})", override)
    sample = bundle.path / card.instance_layout.checked_against
    if not sample.is_file():
        raise FidelityCheckFailed(bundle.path, f"has no sample proof ({sample.name})", override)
    proof = proofs.Proof.load(sample)
    kind = commitment_site(bundle.input_visibility)
    if card.instance_layout.commitment != kind:
        raise FidelityCheckFailed(
            bundle.path,
            f"its layout reads the commitment from the {card.instance_layout.commitment} but a "
            f"{bundle.input_visibility} circuit puts it in the {kind}",
            override,
        )
    if len(proof.instances) != card.instance_layout.count:
        raise FidelityCheckFailed(
            bundle.path,
            f"its layout says {card.instance_layout.count} instances but its proof has "
            f"{len(proof.instances)}",
            override,
        )
    if not proofs.verify(bundle, proof):
        raise FidelityCheckFailed(
            bundle.path, "its sample proof does not verify under its verifying key", override
        )
    return card
