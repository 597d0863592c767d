"""Salted Poseidon commitments to patient records, computed off-circuit.

The circuit hashes its whole input row — standardized features, then salt limbs — with
Poseidon; :func:`commit` reproduces that value in Python so a hospital can attest to it
before (or without) proving. The salt makes the commitment hiding: 6 limbs of 24 bits
(144 bits) — limbs stay below 2**24 so that EZKL's f32 inputs represent them exactly.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from prover.exceptions import InvalidSalt
from prover.zk import ezkl_api
from prover.zk.fields import felt_from_hex

Salt = tuple[int, ...]

#: Salt limbs appended to every committed input. EZKL feeds f32 inputs, whose 24-bit mantissa is
#: exact only for integers < 2**24, so each limb carries 24 bits: 6 limbs = 144 bits of entropy.
SALT_LIMBS = 6
SALT_LIMB_BITS = 24
#: The largest limb: calibration data uses it so the circuit is sized for any salt.
MAX_SALT_LIMB = (1 << SALT_LIMB_BITS) - 1


def new_salt() -> Salt:
    """A fresh random salt from the OS CSPRNG (144 bits)."""
    return tuple(secrets.randbits(SALT_LIMB_BITS) for _ in range(SALT_LIMBS))


def check_salt(salt: Sequence[int]) -> Salt:
    """Validate a caller-supplied salt."""
    if len(salt) != SALT_LIMBS:
        raise InvalidSalt(f"expected {SALT_LIMBS} limbs, got {len(salt)}")
    for i, limb in enumerate(salt):
        if isinstance(limb, bool) or not isinstance(limb, int):
            raise InvalidSalt(f"limb {i} is {type(limb).__name__}, not an integer")
        if not 0 <= limb < 1 << SALT_LIMB_BITS:
            raise InvalidSalt(f"limb {i} = {limb} is outside [0, 2**{SALT_LIMB_BITS})")
    return tuple(salt)


def salt_entropy_bits() -> int:
    """Entropy the salt carries into the commitment."""
    return SALT_LIMBS * SALT_LIMB_BITS


def input_row(standardized: Sequence[float], salt: Sequence[int]) -> list[float]:
    """The circuit's input row: features followed by the salt limbs."""
    return [float(v) for v in standardized] + [float(limb) for limb in check_salt(salt)]


def quantize_row(row: Sequence[float], input_scale: int) -> list[str]:
    """Quantize a row to felts exactly as EZKL's witness generation does."""
    return [ezkl_api.float_to_felt(v, input_scale) for v in row]


def commit(standardized: Sequence[float], salt: Sequence[int], input_scale: int) -> int:
    """The Poseidon commitment the proof exposes as its hashed-input instance."""
    felts = quantize_row(input_row(standardized, salt), input_scale)
    return felt_from_hex(ezkl_api.poseidon_hash(felts))
