"""BN254 scalar-field helpers: EZKL's little-endian hex felts, signed fixed-point decoding."""

from __future__ import annotations

from prover.exceptions import FieldElementOutOfRange

#: The BN254 (alt_bn128) scalar field modulus r: every public instance must be < r.
BN254_R = 21888242871839275222246405745257275088548364400416034343698204186575808495617
_HALF = (BN254_R - 1) // 2


def felt_from_hex(value: str) -> int:
    """Decode one of EZKL's felts: 32 bytes, little-endian hex (optionally 0x-prefixed)."""
    raw = bytes.fromhex(value.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError(f"expected a 32-byte felt, got {len(raw)} bytes")
    return check_felt(int.from_bytes(raw, "little"))


def felt_to_hex(value: int) -> str:
    """Encode an integer as EZKL's little-endian 32-byte hex felt."""
    return check_felt(value).to_bytes(32, "little").hex()


def check_felt(value: int) -> int:
    """Return ``value`` if it is a canonical field element, else raise."""
    if not 0 <= value < BN254_R:
        raise FieldElementOutOfRange(value)
    return value


def to_signed(value: int) -> int:
    """Decode a felt as a signed integer: elements above (r-1)/2 are negatives (``r - x``)."""
    check_felt(value)
    return value - BN254_R if value > _HALF else value


def from_signed(value: int) -> int:
    """Encode a signed integer as a felt (negatives become ``r - |v|``)."""
    if not -_HALF <= value <= _HALF:
        raise FieldElementOutOfRange(value)
    return value % BN254_R


def fixed_to_float(value: int, scale: int) -> float:
    """Decode a felt holding a signed fixed-point number with ``scale`` fractional bits."""
    return to_signed(value) / float(1 << scale)
