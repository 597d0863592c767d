"""Salted commitments to patient records, computed off-circuit.

The circuit commits to its whole input row — standardized features, then salt limbs — in one
of two ways, and :func:`commit_input` reproduces the commitment in Python so a relay can check a
proof (or a remote prover's result) against the record it asked for:

- ``polycommit`` (the default): an unblinded KZG commitment of the input column, which EZKL
  writes into the proof as its first G1 point. The commitment is ``keccak256(x || y)`` of that
  point (coordinates 32-byte big-endian) — what ``ModelRegistry`` computes from the proof bytes.
  KZG is linear in the values, so a brute-force search for a record can split the salt in two
  halves and meet in the middle: it costs the square root of the salt space. 11 limbs of 24 bits
  (264 bits) put that at 2^132.
- ``hashed``: a Poseidon hash exposed as a public instance; 6 limbs (144 bits) of salt.

Limbs stay below 2**24 so that EZKL's f32 inputs represent them exactly.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from eth_utils import keccak

from prover.exceptions import InvalidSalt, ProofError
from prover.zk import ezkl_api
from prover.zk.fields import felt_from_hex

if TYPE_CHECKING:
    from prover.zk.circuit import Bundle

Salt = tuple[int, ...]

#: Salt limbs of a Poseidon (``hashed``) commitment: 6 x 24 = 144 bits.
SALT_LIMBS = 6
#: Salt limbs of a KZG (``polycommit``) commitment: 11 x 24 = 264 bits (2^132 meet-in-the-middle).
KZG_SALT_LIMBS = 11
#: The most limbs any model takes (what the relay's API accepts before it knows the model).
MAX_SALT_LIMBS = max(SALT_LIMBS, KZG_SALT_LIMBS)
SALT_LIMB_BITS = 24
#: The largest limb: calibration data uses it so the circuit is sized for any salt.
MAX_SALT_LIMB = (1 << SALT_LIMB_BITS) - 1
#: ``InstanceLayout.inputIndex`` of a version whose input commitment is read from the proof
#: (``ModelRegistry.PROOF_COMMITMENT``), not from an instance.
PROOF_COMMITMENT_INDEX = 0xFFFF
#: Bytes of the G1 point a ``polycommit`` proof starts with (x then y, big-endian).
POINT_BYTES = 64


def commitment_site(input_visibility: str) -> Literal["proof", "instance"]:
    """Where a circuit with this input visibility exposes its input commitment."""
    return "proof" if input_visibility == "polycommit" else "instance"


def salt_limbs_for(input_visibility: str) -> int:
    """How many salt limbs a circuit with this input visibility takes."""
    return KZG_SALT_LIMBS if commitment_site(input_visibility) == "proof" else SALT_LIMBS


def new_salt(limbs: int = SALT_LIMBS) -> Salt:
    """A fresh random salt of ``limbs`` limbs from the OS CSPRNG."""
    return tuple(secrets.randbits(SALT_LIMB_BITS) for _ in range(limbs))


def check_salt(salt: Sequence[int], limbs: int = SALT_LIMBS) -> Salt:
    """Validate a caller-supplied salt of ``limbs`` limbs."""
    if len(salt) != limbs:
        raise InvalidSalt(f"expected {limbs} limbs, got {len(salt)}")
    for i, limb in enumerate(salt):
        if isinstance(limb, bool) or not isinstance(limb, int):
            raise InvalidSalt(f"limb {i} is {type(limb).__name__}, not an integer")
        if not 0 <= limb < 1 << SALT_LIMB_BITS:
            raise InvalidSalt(f"limb {i} = {limb} is outside [0, 2**{SALT_LIMB_BITS})")
    return tuple(salt)


def salt_entropy_bits(limbs: int = SALT_LIMBS) -> int:
    """Entropy a salt of ``limbs`` limbs carries into the commitment."""
    return limbs * SALT_LIMB_BITS


def input_row(standardized: Sequence[float], salt: Sequence[int]) -> list[float]:
    """The circuit's input row: features followed by the salt limbs (checked, any count)."""
    return [float(v) for v in standardized] + [float(limb) for limb in check_salt(salt, len(salt))]


def quantize_row(row: Sequence[float], input_scale: int) -> list[str]:
    """Quantize a row to felts exactly as EZKL's witness generation does."""
    return [ezkl_api.float_to_felt(v, input_scale) for v in row]


def commit(standardized: Sequence[float], salt: Sequence[int], input_scale: int) -> int:
    """The Poseidon commitment the proof exposes as its hashed-input instance."""
    felts = quantize_row(input_row(standardized, salt), input_scale)
    return felt_from_hex(ezkl_api.poseidon_hash(felts))


def point_commitment(x: int, y: int) -> int:
    """``keccak256(x || y)`` of a G1 point, as ``ModelRegistry`` computes it from a proof."""
    return int.from_bytes(keccak(x.to_bytes(32, "big") + y.to_bytes(32, "big")), "big")


def proof_commitment(proof: bytes) -> int:
    """The input commitment of a ``polycommit`` proof: the hash of its first G1 point."""
    if len(proof) < POINT_BYTES:
        raise ProofError(f"a polycommit proof has at least {POINT_BYTES} bytes, got {len(proof)}")
    return int.from_bytes(keccak(proof[:POINT_BYTES]), "big")


def kzg_commit(
    standardized: Sequence[float],
    salt: Sequence[int],
    input_scale: int,
    *,
    vk: Path,
    settings: Path,
    srs: Path,
) -> int:
    """The KZG commitment a ``polycommit`` proof starts with, hashed like the registry does."""
    felts = quantize_row(input_row(standardized, salt), input_scale)
    points = ezkl_api.kzg_commit(felts, vk, settings, srs)
    if len(points) != 1:
        raise ProofError(f"expected one committed input column, EZKL gave {len(points)}")
    return point_commitment(*points[0])


def commit_input(bundle: Bundle, standardized: Sequence[float], salt: Sequence[int]) -> int:
    """The input commitment a proof of this bundle exposes for ``standardized`` and ``salt``."""
    if commitment_site(bundle.input_visibility) == "proof":
        return kzg_commit(
            standardized,
            salt,
            bundle.input_scale,
            vk=bundle.vk,
            settings=bundle.settings,
            srs=bundle.srs,
        )
    return commit(standardized, salt, bundle.input_scale)
