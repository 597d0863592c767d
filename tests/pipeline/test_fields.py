import pytest
from hypothesis import given
from hypothesis import strategies as st

from prover.exceptions import FieldElementOutOfRange
from prover.zk.fields import (
    BN254_R,
    felt_from_hex,
    felt_to_hex,
    fixed_to_float,
    from_signed,
    to_signed,
)

HALF = (BN254_R - 1) // 2


@given(st.integers(min_value=-HALF, max_value=HALF))
def test_signed_round_trip(value: int) -> None:
    assert to_signed(from_signed(value)) == value
    assert felt_from_hex(felt_to_hex(from_signed(value))) == from_signed(value)


def test_negatives_are_r_minus_x() -> None:
    assert from_signed(-1) == BN254_R - 1
    assert to_signed(BN254_R - 1) == -1
    assert to_signed(HALF) == HALF
    assert to_signed(HALF + 1) == -HALF
    assert fixed_to_float(from_signed(-3 << 13), 14) == -1.5


@pytest.mark.parametrize("value", [BN254_R, BN254_R + 1, -1, 2**256 - 1])
def test_non_canonical_elements_are_rejected(value: int) -> None:
    with pytest.raises(FieldElementOutOfRange):
        to_signed(value)


def test_ezkl_felts_are_little_endian() -> None:
    assert felt_from_hex("01" + "00" * 31) == 1
    assert felt_to_hex(256) == "0001" + "00" * 30
    with pytest.raises(ValueError, match="32-byte"):
        felt_from_hex("01")
