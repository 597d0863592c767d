"""What shrinks the test CNN's proving key at logrows 12 with a salted, hashed input?

A one-off measurement (issue 8): the zoo's 8×8 CNN (``tests/toolkit/zoo.py``), salted exactly as
``model build`` salts it, under the tuned baseline (scale 4, rebase 10, 2 legs of base 256, 2
inner columns) and one change at a time: decomposition base/legs, lookup range, scales, inner
columns, ``bounded_log_lookup``, ``disable_freivalds``, ``check_mode``, and the ``polycommit``
input. For each: rows, logrows, proving-key bytes, prove time (median of 3), and decision flips
on the 60 held-out images. Prints one JSON line per candidate; ``--out FILE`` writes them all.

    python -m bench.cnn_pk [--out bench/cnn_pk.json] [--only NAME,...] [--proves N]
    python -m bench.cnn_pk --prove-record [--proves N]

The machine's load average is recorded with each candidate: prove times on a shared machine
are comparable only within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from prover.exceptions import EzklError
from prover.models.build import _float_outputs
from prover.models.data import load_rows
from prover.models.preprocess import Preprocessor
from prover.zk import ezkl_api, tuning
from prover.zk.circuit import CircuitSpec
from prover.zk.commitment import MAX_SALT_LIMB, SALT_LIMBS
from prover.zk.fields import felt_from_hex, fixed_to_float
from prover.zk.salting import inspect_graph, salt_graph
from prover.zk.srs import dev_srs

ROOT = Path(__file__).resolve().parent.parent
BASE = CircuitSpec(
    name="digits_cnn",
    input_scale=4,
    param_scale=4,
    scale_rebase_multiplier=10,
    decomp_base=256,
    decomp_legs=2,
    num_inner_cols=2,
)
#: name -> changes to BASE (``extra`` holds PyRunArgs fields CircuitSpec has no field for).
CANDIDATES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "base16_legs4": {"decomp_base": 16, "decomp_legs": 4},
    "base64_legs3": {"decomp_base": 64, "decomp_legs": 3},
    "base1024_legs2": {"decomp_base": 1024, "decomp_legs": 2},
    "base4096_legs2": {"decomp_base": 4096, "decomp_legs": 2},
    "legs1_base65536": {"decomp_base": 65536, "decomp_legs": 1},
    "scale3": {"input_scale": 3, "param_scale": 3},
    "scale4_param3": {"param_scale": 3},
    "scale3_param4": {"input_scale": 3},
    "cols3": {"num_inner_cols": 3},
    "cols4": {"num_inner_cols": 4},
    "lookup_small": {"extra": {"lookup_range": (-256, 256)}},
    "bounded_log_lookup": {"extra": {"bounded_log_lookup": True}},
    "disable_freivalds": {"extra": {"disable_freivalds": True}},
    "rebase1": {"scale_rebase_multiplier": 1},
    "polycommit": {"input_visibility": "polycommit"},
    "polycommit_cols4": {"input_visibility": "polycommit", "num_inner_cols": 4},
    "private_reference": {"input_visibility": "private"},
}


def _data(work: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    sys.path.insert(0, str(ROOT / "tests"))
    from toolkit.zoo import make_digits_cnn

    zoo = make_digits_cnn(work)
    (info,), _ = inspect_graph(zoo.onnx)
    pre = Preprocessor.load(zoo.preprocess) if zoo.preprocess else Preprocessor.identity(info.size)
    held, _ = load_rows(zoo.held_out, info.size)
    held_model = pre.apply(np.asarray(held, dtype=np.float64))
    reference = _float_outputs(zoo.onnx, info, held_model)
    salted = salt_graph(zoo.onnx, work / "salted.onnx").path
    return salted, held_model, reference


def _row(values: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in values] + [float(MAX_SALT_LIMB)] * SALT_LIMBS]


def measure(
    proves: int,
    name: str,
    change: dict[str, Any],
    salted: Path,
    held: np.ndarray,
    reference: np.ndarray,
    work: Path,
) -> dict[str, Any]:
    """One candidate: settings, fidelity, keys, three proofs."""
    d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))  # a name may be measured twice
    extra = {**BASE.extra, **change.pop("extra", {})}
    spec = dataclasses.replace(BASE, **change, extra=extra)
    out: dict[str, Any] = {"name": name, "change": {**change, **extra}}
    try:
        settings = d / "settings.json"
        ezkl_api.gen_settings(salted, settings, spec.run_args())
        data = json.loads(settings.read_text())
        logrows = tuning.logrows_for(data)
        data["run_args"]["logrows"] = logrows
        settings.write_text(json.dumps(data))
        out.update(
            rows=int(data["num_rows"]),
            logrows=logrows,
            lookups=data.get("required_lookups"),
            range_checks=data.get("required_range_checks"),
        )
        compiled = d / "model.compiled"
        ezkl_api.compile_circuit(salted, compiled, settings)
        srs = dev_srs(logrows).path
        ezkl_api.setup(compiled, d / "vk.key", d / "pk.key", srs)
        out["pk_bytes"] = (d / "pk.key").stat().st_size
        out_scales = data["model_output_scales"]
        target = tuning.Target("classifier")
        flips = 0
        times = []
        polycommit = spec.input_visibility == "polycommit"
        for i, row in enumerate(held):
            inp = d / "input.json"
            inp.write_text(json.dumps({"input_data": _row(row)}))
            wit = d / "witness.json"
            w = ezkl_api._call(
                "gen_witness",
                __import__("ezkl").gen_witness,
                str(inp),
                str(compiled),
                str(wit),
                str(d / "vk.key") if polycommit else None,
                str(srs) if polycommit else None,
            )
            got = np.array(
                [fixed_to_float(felt_from_hex(h), out_scales[0]) for g in w["outputs"] for h in g]
            )
            flips += int(target.decision(got) != target.decision(reference[i]))
            if i < proves:
                t0 = time.perf_counter()
                ezkl_api.prove(wit, compiled, d / "pk.key", d / "proof.json", srs)
                times.append(time.perf_counter() - t0)
                if i == 0:
                    out["verifies"] = ezkl_api.verify(d / "proof.json", settings, d / "vk.key", srs)
        out.update(
            flips=flips,
            held_out=len(held),
            prove_s=round(statistics.median(times), 3),
            prove_s_all=[round(t, 3) for t in times],
        )
    except EzklError as exc:
        out["error"] = str(exc)[:300]
    return out


def auto_prove_record(proves: int, work: Path) -> dict[str, Any]:
    """``model build``'s own bundle for the CNN, timed as ``./zk bench models`` times it:
    :func:`prover.models.build.prove_record` (check, preprocess, witness, commitment, proof)."""
    from prover.models.build import BuildOptions, LoadedModel, build_model, prove_record

    sys.path.insert(0, str(ROOT / "tests"))
    from toolkit.zoo import make_digits_cnn

    zoo = make_digits_cnn(work / "zoo")
    (info,), _ = inspect_graph(zoo.onnx)
    cal, _ = load_rows(zoo.calibration, info.size)
    held, _ = load_rows(zoo.held_out, info.size)
    bundle = build_model(
        zoo.onnx,
        cal,
        held_out=held,
        labels=zoo.held_out_labels,
        preprocess=zoo.preprocess,
        options=BuildOptions(name="digits_cnn"),
        out_root=work / "bundles",
    )
    model = LoadedModel.open(bundle)
    times = []
    for row in held[:proves]:
        t0 = time.perf_counter()
        prove_record(model, [float(v) for v in row], work / "proofs")
        times.append(time.perf_counter() - t0)
    return {
        "name": "auto_prove_record",
        "pk_bytes": bundle.manifest["sizes"]["pk_bytes"],
        "logrows": bundle.logrows,
        "prove_s": round(statistics.median(times), 3),
        "prove_s_all": [round(t, 3) for t in times],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only")
    parser.add_argument("--proves", type=int, default=3, help="proofs timed per candidate")
    parser.add_argument(
        "--prove-record", action="store_true", help="time model build's own bundle instead"
    )
    args = parser.parse_args()
    names = args.only.split(",") if args.only else [] if args.prove_record else list(CANDIDATES)
    results = []
    with tempfile.TemporaryDirectory(prefix="cnn-pk-") as tmp:
        work = Path(tmp)
        salted, held, reference = _data(work)
        if args.prove_record:
            r = auto_prove_record(args.proves, work)
            r["load_avg_1min"] = round(os.getloadavg()[0], 2)
            print(json.dumps(r), flush=True)
            results.append(r)
        for name in names:
            r = measure(args.proves, name, dict(CANDIDATES[name]), salted, held, reference, work)
            r["load_avg_1min"] = round(os.getloadavg()[0], 2)
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
