"""The one module that talks to EZKL.

Every function takes :class:`~pathlib.Path` arguments, runs EZKL's async calls to completion,
checks every ``bool`` EZKL returns and turns EZKL's ``RuntimeError``/``IOError`` and Rust
panics (``pyo3_runtime.PanicException``, a ``BaseException``) into :class:`EzklError`.

EZKL's Rust logging reaches Python's :mod:`logging` (through pyo3-log) under the ``ezkl`` and
``halo2_proofs`` loggers, and at DEBUG it prints whole witnesses: a patient's quantized features
and salt. Importing this module caps both loggers at WARNING, whatever the application's root
level, so turning on debug logging can never write patient data.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import ezkl

from prover.exceptions import EzklError

T = TypeVar("T")

#: Loggers of EZKL's Rust code; capped at WARNING (their DEBUG output holds witnesses).
RUST_LOGGERS = ("ezkl", "halo2_proofs", "halo2_solidity_verifier", "tract_onnx", "tract_core")
for _name in RUST_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)


class _ExpectedNotice(logging.Filter):
    """Drops EZKL's warning that witness generation got no SRS for a ``polycommit`` input:
    zkcare computes that commitment itself (:func:`kzg_commit`) and reads the proof's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SRS for poly commit does not exist")


logging.getLogger("ezkl.execute").addFilter(_ExpectedNotice())

#: The EZKL release this project is pinned to (and records in every manifest).
EZKL_VERSION: str = str(getattr(ezkl, "__version__", "unknown"))


def _call(operation: str, fn: Callable[..., T], *args: Any) -> T:
    try:
        result = _run_in_loop(fn, args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # Rust panics surface as BaseException subclasses
        raise EzklError(operation, first_line(exc)) from exc
    return result


def _run_in_loop(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Call ``fn``; EZKL's EVM functions need a running loop and return awaitables."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # already inside a loop (e.g. a web framework): run EZKL on a worker thread
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(_run_in_loop, fn, args).result()

    async def runner() -> Any:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    return asyncio.run(runner())


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (EZKL and Rust messages can span pages)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def _check(operation: str, ok: object) -> None:
    if ok is not True:
        raise EzklError(operation, f"returned {ok!r} instead of True")


def run_args(**fields: Any) -> ezkl.PyRunArgs:
    """Build a ``PyRunArgs`` with every field set explicitly (never EZKL's defaults)."""
    args = ezkl.PyRunArgs()
    for name, value in fields.items():
        if not hasattr(args, name):
            raise EzklError("run_args", f"PyRunArgs has no field {name!r}")
        setattr(args, name, value)
    return args


def gen_settings(model: Path, settings: Path, args: ezkl.PyRunArgs) -> None:
    """Write circuit settings for ``model``."""
    _check(
        "gen_settings", _call("gen_settings", ezkl.gen_settings, str(model), str(settings), args)
    )


def calibrate_settings(
    data: Path, model: Path, settings: Path, target: str, max_logrows: int | None = None
) -> None:
    """Calibrate ``settings`` on ``data`` ("resources" or "accuracy")."""
    ok = _call(
        "calibrate_settings",
        ezkl.calibrate_settings,
        str(data),
        str(model),
        str(settings),
        target,
        2.0,
        None,
        [1, 2],
        max_logrows,
    )
    _check("calibrate_settings", ok)


def compile_circuit(model: Path, compiled: Path, settings: Path) -> None:
    """Compile the ONNX model into EZKL's circuit format."""
    ok = _call("compile_circuit", ezkl.compile_circuit, str(model), str(compiled), str(settings))
    _check("compile_circuit", ok)


def gen_srs(srs: Path, logrows: int) -> None:
    """Generate a development-only SRS (its toxic waste is not destroyed by a ceremony)."""
    _call("gen_srs", ezkl.gen_srs, str(srs), logrows)
    if not srs.is_file() or srs.stat().st_size == 0:
        raise EzklError("gen_srs", f"no SRS written to {srs}")


def setup(compiled: Path, vk: Path, pk: Path, srs: Path) -> None:
    """Generate the verifying and proving keys."""
    ok = _call("setup", ezkl.setup, str(compiled), str(vk), str(pk), str(srs), None, False)
    _check("setup", ok)


def gen_witness(data: Path, compiled: Path, witness: Path | None) -> dict[str, Any]:
    """Run the quantized forward pass; returns EZKL's witness dict."""
    out = _call(
        "gen_witness",
        ezkl.gen_witness,
        str(data),
        str(compiled),
        None if witness is None else str(witness),
        None,
        None,
    )
    if not isinstance(out, dict):
        raise EzklError("gen_witness", f"returned {type(out).__name__}, not a witness")
    return out


def prove(witness: Path, compiled: Path, pk: Path, proof: Path, srs: Path) -> dict[str, Any]:
    """Prove; returns EZKL's proof dict (also written to ``proof``)."""
    out = _call("prove", ezkl.prove, str(witness), str(compiled), str(pk), str(proof), str(srs))
    if not isinstance(out, dict) or not proof.is_file():
        raise EzklError("prove", "no proof was produced")
    return out


def verify(proof: Path, settings: Path, vk: Path, srs: Path) -> bool:
    """Verify a proof natively; False means rejected, errors raise."""
    try:
        return bool(ezkl.verify(str(proof), str(settings), str(vk), str(srs), False))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        # EZKL raises (rather than returning False) on a proof that fails to verify.
        if "verif" in str(exc).lower() or "constraint" in str(exc).lower():
            return False
        raise EzklError("verify", first_line(exc)) from exc


def create_evm_verifier(vk: Path, settings: Path, sol: Path, abi: Path, srs: Path) -> None:
    """Write the Solidity verifier for ``vk``.

    Offline, EZKL writes the ``.sol`` and then fails while downloading solc (svm) for its ABI
    step; exactly that failure is accepted, the caller checks the file and compiles it itself.
    """
    try:
        _call(
            "create_evm_verifier",
            ezkl.create_evm_verifier,
            str(vk),
            str(settings),
            str(sol),
            str(abi),
            str(srs),
            False,
        )
    except EzklError as exc:
        known_offline_failure = "svm" in exc.detail or "soliditylang.org" in exc.detail
        if not (known_offline_failure and sol.is_file()):
            raise


def poseidon_hash(felts: Sequence[str]) -> str:
    """EZKL's Poseidon hash (the circuit's hashed-input commitment) of little-endian felts."""
    out = _call("poseidon_hash", ezkl.poseidon_hash, list(felts))
    if not isinstance(out, list) or len(out) != 1:
        raise EzklError("poseidon_hash", f"unexpected result {out!r}")
    return str(out[0])


def kzg_commit(felts: Sequence[str], vk: Path, settings: Path, srs: Path) -> list[tuple[int, int]]:
    """EZKL's unblinded KZG commitment of one ``polycommit`` column: its affine points."""
    out = _call("kzg_commit", ezkl.kzg_commit, list(felts), str(vk), str(settings), str(srs))
    if not isinstance(out, list) or not out:
        raise EzklError("kzg_commit", f"unexpected result {out!r}")
    # EZKL prints each coordinate as little-endian hex.
    return [(_le_int(getattr(p, "x")), _le_int(getattr(p, "y"))) for p in out]  # noqa: B009


def _le_int(hex_le: str) -> int:
    return int.from_bytes(bytes.fromhex(hex_le.removeprefix("0x")), "little")


def float_to_felt(value: float, scale: int) -> str:
    """Quantize ``value`` exactly as witness generation does for an f32 model input."""
    return str(_call("float_to_felt", ezkl.float_to_felt, value, scale, ezkl.PyInputType.F32))


def encode_evm_calldata(proof: Path, calldata: Path) -> bytes:
    """EZKL's own ABI encoding of ``verifyProof(proof, instances)`` calldata."""
    out = _call("encode_evm_calldata", ezkl.encode_evm_calldata, str(proof), str(calldata), None)
    return bytes(out)
