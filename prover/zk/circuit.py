"""ONNX model + calibration data -> a circuit bundle, rebuilt only when its inputs change.

A bundle directory holds the EZKL settings, the calibration data, the compiled circuit, the
SRS (hard link to the cache), the verifying and proving keys, the generated Solidity verifier
with its compiled artifact, and ``manifest.json`` (hashes and parameters). Bundles are built
in a scratch directory and renamed into place, so a crash never leaves a half-built bundle,
and live under ``artifacts/`` (git-ignored: proving keys are large).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from prover.exceptions import (
    BundleIncomplete,
    CircuitError,
    UnsafeVisibility,
    VerifierGenerationError,
)
from prover.paths import ARTIFACTS, VERIFIERS_DIR, partial_path
from prover.toolchain import solc_version
from prover.zk import ezkl_api
from prover.zk.hashing import sha256_file
from prover.zk.srs import DEV_WARNING, Srs, ceremony_srs, dev_srs
from prover.zk.verifier import (
    build_batch_verifier,
    check_eip170,
    compile_source,
    generate_verifier,
)

Visibility = Literal["public", "private", "hashed", "polycommit", "fixed"]
_INPUT_OK = ("hashed", "polycommit")
_PARAM_OK = ("fixed", "hashed", "polycommit")
#: Visibility names EZKL writes into settings.json for the spec's names (``polycommit``).
_WRITTEN_AS = {"kzgcommit": "polycommit"}
#: 2: bundles carry the batch verifier (``BatchVerifier.sol``/``.json``) next to the single one.
BUNDLE_FORMAT = 2


@dataclass(frozen=True)
class CircuitSpec:
    """How to turn a model into a circuit. Defaults are zkcare's tuned settings.

    Patient inputs must be committed (``hashed`` = Poseidon, or ``polycommit`` = KZG);
    ``public`` inputs are refused unless ``allow_public_patient_inputs`` is set on purpose.
    Parameters are ``fixed`` (the verifier commits to the weights) or committed.
    ``calibrate`` runs EZKL's calibration (used for the "EZKL defaults" baseline).
    """

    name: str
    input_visibility: Visibility = "hashed"
    param_visibility: Visibility = "fixed"
    output_visibility: Visibility = "public"
    input_scale: int = 7
    param_scale: int = 7
    logrows: int = 11
    num_inner_cols: int = 1
    decomp_base: int = 256
    decomp_legs: int = 2
    scale_rebase_multiplier: int = 10
    range_check_inputs_outputs: bool = False
    calibrate: Literal["resources", "accuracy"] | None = None
    use_ezkl_defaults: bool = False
    allow_public_patient_inputs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse settings that would leak patient data or leave the model unbound."""
        if self.input_visibility == "public":
            if not self.allow_public_patient_inputs:
                raise UnsafeVisibility(
                    "patient input",
                    "public",
                    "patient features would be published on-chain; use 'hashed' (salted "
                    "Poseidon) or pass allow_public_patient_inputs=True for synthetic data",
                )
        elif self.input_visibility not in _INPUT_OK:
            raise UnsafeVisibility(
                "patient input",
                self.input_visibility,
                "nothing would bind the proof to the attested record; use 'hashed'",
            )
        if self.param_visibility not in _PARAM_OK:
            raise UnsafeVisibility(
                "model parameter",
                self.param_visibility,
                "nothing would bind the proof to the registered weights; use 'fixed' or 'hashed'",
            )
        if self.output_visibility != "public":
            raise UnsafeVisibility(
                "model output", self.output_visibility, "the contract must read the output"
            )

    def run_args(self) -> Any:
        """EZKL ``PyRunArgs`` for this spec (every field set explicitly)."""
        common = {
            "input_visibility": self.input_visibility,
            "param_visibility": self.param_visibility,
            "output_visibility": self.output_visibility,
        }
        if self.use_ezkl_defaults:
            return ezkl_api.run_args(**common)
        return ezkl_api.run_args(
            **common,
            input_scale=self.input_scale,
            param_scale=self.param_scale,
            logrows=self.logrows,
            num_inner_cols=self.num_inner_cols,
            decomp_base=self.decomp_base,
            decomp_legs=self.decomp_legs,
            scale_rebase_multiplier=self.scale_rebase_multiplier,
            ignore_range_check_inputs_outputs=not self.range_check_inputs_outputs,
            **self.extra,
        )


@dataclass(frozen=True)
class Bundle:
    """A built circuit bundle on disk.

    ``pinned`` maps file names to other paths holding the same bytes: a prover process pins the
    files each proof reads into sealed in-memory files (:func:`prover.relay.worker.pin_bundle`).
    """

    path: Path
    manifest: dict[str, Any]
    pinned: Mapping[str, Path] = field(default_factory=dict, compare=False)

    def file(self, name: str) -> Path:
        """A file of the bundle, checked to exist."""
        path = self.pinned.get(name) or self.path / name
        if not path.is_file():
            raise BundleIncomplete(self.path, name)
        return path

    @property
    def model(self) -> Path:
        return self.file("model.onnx")

    @property
    def settings(self) -> Path:
        return self.file("settings.json")

    @property
    def compiled(self) -> Path:
        return self.file("model.compiled")

    @property
    def vk(self) -> Path:
        return self.file("vk.key")

    @property
    def pk(self) -> Path:
        return self.file("pk.key")

    @property
    def srs(self) -> Path:
        return self.file("kzg.srs")

    @property
    def verifier_source(self) -> Path:
        return self.file("Verifier.sol")

    @property
    def verifier_artifact(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.file("Verifier.json").read_text())
        return data

    @property
    def batch_verifier_source(self) -> Path:
        """The batch verifier (:mod:`prover.zk.batch`); missing if its shape was unknown."""
        return self.file("BatchVerifier.sol")

    @property
    def batch_verifier_artifact(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.file("BatchVerifier.json").read_text())
        return data

    @property
    def input_visibility(self) -> str:
        """How the circuit commits its input: ``polycommit`` (KZG, in the proof) or ``hashed``."""
        return str(self.manifest["spec"]["input_visibility"])

    @property
    def input_scale(self) -> int:
        return int(self.manifest["scales"]["input"][0])

    @property
    def output_scale(self) -> int:
        return int(self.manifest["scales"]["output"][0])

    @property
    def output_scales(self) -> list[int]:
        """The fixed-point scale of each public output value, in instance order (a graph's
        output tensors may differ: a count at scale 0 next to values passed through)."""
        scales = self.manifest["scales"]["output"]
        shapes = self.manifest["instance_shapes"]
        pairs = zip(scales, shapes, strict=True)
        return [int(scale) for scale, shape in pairs for _ in range(_size(shape))]

    @property
    def logrows(self) -> int:
        return int(self.manifest["logrows"])

    @property
    def card(self) -> dict[str, Any] | None:
        """The model card (``prover.models.card.ModelCard``), if the bundle has one."""
        card = self.manifest.get("card")
        return card if isinstance(card, dict) else None

    @property
    def contract_name(self) -> str:
        return str(self.manifest["verifier"]["contract"])


ProgressFn = Callable[[str], None]
FinishFn = Callable[["Bundle"], tuple[dict[str, Any], list[str]]]


def _size(shape: Sequence[int]) -> int:
    size = 1
    for dim in shape:
        size *= int(dim)
    return size


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def bundle_key(
    onnx: Path,
    spec: CircuitSpec,
    calibration: Sequence[Sequence[float]],
    srs: str,
    extra: Any = None,
) -> str:
    """Content hash of everything a bundle depends on."""
    inputs = {
        "extra": extra,
        "format": BUNDLE_FORMAT,
        "onnx": sha256_file(onnx),
        "spec": asdict(spec),
        "calibration": _sha256_json([list(map(float, r)) for r in calibration]),
        "ezkl": ezkl_api.EZKL_VERSION,
        "solc": solc_version(),
        # the batch verifier is generated code too: a new transformation rebuilds it
        "batch": sha256_file(Path(__file__).with_name("batch.py")),
        "srs": srs,
    }
    return _sha256_json(inputs)[:20]


def load_bundle(path: Path) -> Bundle:
    """Open a bundle directory and check every file its manifest names is present."""
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise BundleIncomplete(path, "manifest.json")
    bundle = Bundle(path, json.loads(manifest_path.read_text()))
    for name in bundle.manifest["files"]:
        bundle.file(name)
    return bundle


def build_bundle(
    onnx: Path,
    spec: CircuitSpec,
    calibration: Sequence[Sequence[float]],
    *,
    srs_file: Path | None = None,
    out_root: Path | None = None,
    contract_name: str | None = None,
    export_verifier_to: Path | None = VERIFIERS_DIR,
    extra_manifest: dict[str, Any] | None = None,
    key_extra: Any = None,
    finish: FinishFn | None = None,
    progress: ProgressFn | None = None,
) -> Bundle:
    """Build (or reuse) the bundle for ``onnx`` under ``spec``.

    Args:
        onnx: the ONNX model.
        spec: circuit settings; checked for unsafe visibility first.
        calibration: calibration data, one flat list per model input (EZKL's ``input_data``),
            recorded in the bundle and used when ``spec.calibrate`` is set.
        srs_file: a ceremony SRS; ``None`` uses a cached dev SRS (not for production).
        out_root: where bundles live (default ``artifacts/bundles``).
        contract_name: the verifier contract's name (default from ``spec.name``).
        export_verifier_to: directory for a copy of the verifier source (``contracts/verifiers``).
        extra_manifest: extra fields recorded in the manifest (e.g. preprocessing hash).
        key_extra: anything else the bundle depends on (JSON-serializable), part of its key.
        finish: called with the complete scratch bundle before it is renamed into place; may
            write files into it and returns ``(extra manifest fields, extra file names)``.
        progress: called with a short message as each stage starts.
    """
    spec.check()
    say = progress or (lambda _msg: None)
    root = out_root or ARTIFACTS / "bundles"
    root.mkdir(parents=True, exist_ok=True)
    srs_id = f"file:{sha256_file(srs_file)}" if srs_file else "dev"
    key = bundle_key(onnx, spec, calibration, srs_id, key_extra)
    final = root / f"{spec.name}-{key}"
    name = contract_name or "".join(p.capitalize() for p in spec.name.split("_")) + "Verifier"
    if final.is_dir():
        try:
            bundle = load_bundle(final)
            if bundle.manifest["srs"]["sha256"] == sha256_file(bundle.srs):
                _export(bundle, export_verifier_to)
                return bundle
        except (BundleIncomplete, KeyError, json.JSONDecodeError):
            pass
        shutil.rmtree(final)  # stale or damaged: rebuild from scratch
    scratch = Path(tempfile.mkdtemp(prefix=f".building-{spec.name}-", dir=root))
    try:
        bundle = _build(onnx, spec, calibration, srs_file, scratch, name, extra_manifest, say)
        if finish is not None:
            fields, names = finish(bundle)
            manifest = {**bundle.manifest, **fields, "files": [*bundle.manifest["files"], *names]}
            (scratch / "manifest.json").write_text(
                json.dumps(manifest, indent=2, sort_keys=True) + "\n"
            )
        try:
            os.rename(scratch, final)
        except OSError:
            if not final.is_dir():  # not a concurrent builder winning the race
                raise
        bundle = load_bundle(final)
        _export(bundle, export_verifier_to)
        return bundle
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _export(bundle: Bundle, directory: Path | None) -> None:
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    sources = [(bundle.contract_name, bundle.verifier_source)]
    batch = bundle.manifest.get("batch_verifier") or {}
    if "contract" in batch:
        sources.append((str(batch["contract"]), bundle.batch_verifier_source))
    for name, path in sources:
        target = directory / f"{name}.sol"
        source = path.read_bytes()
        if not target.is_file() or target.read_bytes() != source:
            tmp = partial_path(target)
            tmp.write_bytes(source)
            os.replace(tmp, target)


def _build(
    onnx: Path,
    spec: CircuitSpec,
    calibration: Sequence[Sequence[float]],
    srs_file: Path | None,
    d: Path,
    contract_name: str,
    extra_manifest: dict[str, Any] | None,
    say: ProgressFn,
) -> Bundle:
    timings: dict[str, float] = {}

    def stage(label: str) -> Callable[[], None]:
        say(label)
        start = time.perf_counter()
        return lambda: timings.__setitem__(label, round(time.perf_counter() - start, 3))

    shutil.copyfile(onnx, d / "model.onnx")
    (d / "calibration.json").write_text(
        json.dumps({"input_data": [[float(v) for v in data] for data in calibration]})
    )
    done = stage("settings")
    ezkl_api.gen_settings(d / "model.onnx", d / "settings.json", spec.run_args())
    if spec.calibrate:
        ezkl_api.calibrate_settings(
            d / "calibration.json", d / "model.onnx", d / "settings.json", spec.calibrate
        )
    settings = json.loads((d / "settings.json").read_text())
    _check_settings_visibility(settings, spec)
    done()
    done = stage("compile")
    ezkl_api.compile_circuit(d / "model.onnx", d / "model.compiled", d / "settings.json")
    done()
    logrows = int(settings["run_args"]["logrows"])
    done = stage("srs")
    srs: Srs = ceremony_srs(srs_file, logrows) if srs_file else dev_srs(logrows)
    try:
        os.link(srs.path, d / "kzg.srs")
    except OSError:
        shutil.copyfile(srs.path, d / "kzg.srs")
    done()
    done = stage("setup (keys)")
    ezkl_api.setup(d / "model.compiled", d / "vk.key", d / "pk.key", d / "kzg.srs")
    done()
    done = stage("verifier")
    header = {
        "contract": contract_name,
        "model sha256": sha256_file(d / "model.onnx"),
        "vk sha256": sha256_file(d / "vk.key"),
        "settings sha256": sha256_file(d / "settings.json"),
        "srs": DEV_WARNING if srs.dev else f"ceremony sha256 {srs.sha256}",
    }
    source = generate_verifier(
        d / "vk.key", d / "settings.json", d / "kzg.srs", d / "Verifier.sol", contract_name, header
    )
    compiled = compile_source(source, contract_name, f"{contract_name}.sol")
    check_eip170(compiled)
    (d / "Verifier.json").write_text(
        json.dumps(
            {
                "contractName": contract_name,
                "abi": compiled.abi,
                "bytecode": "0x" + compiled.bytecode.hex(),
                "deployedBytecode": "0x" + compiled.deployed_bytecode.hex(),
            }
        )
    )
    done()
    done = stage("batch verifier")
    try:
        batch: dict[str, Any] = build_batch_verifier(source, d)
        batch_files = ["BatchVerifier.sol", "BatchVerifier.json"]
    except VerifierGenerationError as exc:  # the single verifier still works; say why
        batch, batch_files = {"error": str(exc)}, []
        say(f"no batch verifier: {exc}")
    done()
    run_args = settings["run_args"]
    files = [
        "model.onnx",
        "calibration.json",
        "settings.json",
        "model.compiled",
        "kzg.srs",
        "vk.key",
        "pk.key",
        "Verifier.sol",
        "Verifier.json",
        *batch_files,
    ]
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": spec.name,
        "spec": asdict(spec),
        "sha256": {
            "onnx": sha256_file(d / "model.onnx"),
            "settings": sha256_file(d / "settings.json"),
            "calibration": sha256_file(d / "calibration.json"),
            "vk": sha256_file(d / "vk.key"),
            "verifier": sha256_file(d / "Verifier.sol"),
        },
        "logrows": logrows,
        "scales": {
            "input": settings["model_input_scales"],
            "param": run_args["param_scale"],
            "output": settings["model_output_scales"],
        },
        "visibility": {
            "input": run_args["input_visibility"],
            "param": run_args["param_visibility"],
            "output": run_args["output_visibility"],
        },
        "instance_shapes": settings["model_instance_shapes"],
        "ezkl_version": ezkl_api.EZKL_VERSION,
        "solc_version": solc_version(),
        "srs": {"dev": srs.dev, "sha256": srs.sha256, "label": srs.label, "logrows": logrows},
        "verifier": {
            "contract": contract_name,
            "deployed_bytes": len(compiled.deployed_bytecode),
            "deployed_code_keccak": _keccak_hex(compiled.deployed_bytecode),
        },
        "batch_verifier": batch,
        "sizes": {
            "pk_bytes": (d / "pk.key").stat().st_size,
            "vk_bytes": (d / "vk.key").stat().st_size,
        },
        "timings_s": timings,
        "files": files,
        **(extra_manifest or {}),
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Bundle(d, manifest)


def _keccak_hex(code: bytes) -> str:
    from eth_utils import keccak

    return "0x" + keccak(code).hex()


def _check_settings_visibility(settings: dict[str, Any], spec: CircuitSpec) -> None:
    """Defense in depth: what EZKL actually wrote must match what the spec asked for."""
    written = settings["run_args"]["input_visibility"]
    kind = written if isinstance(written, str) else next(iter(written))
    if _WRITTEN_AS.get(kind.lower(), kind.lower()) != spec.input_visibility:
        raise CircuitError(
            f"EZKL wrote input visibility {written!r}, expected {spec.input_visibility!r}"
        )
