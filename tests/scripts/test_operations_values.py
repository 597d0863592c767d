"""prover.operations' pure parts: amounts, addresses, fixed-point rules, error lines (no chain)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from ape.exceptions import ApeException, ContractLogicError, CustomError
from ethpm_types.abi import ABIType, ErrorABI

from prover import operations as ops
from prover.exceptions import InvalidInput, ZkcareError


@pytest.mark.parametrize("text", ["abc", "", "1e", "0x10"])
def test_amounts_must_be_numbers(text: str) -> None:
    with pytest.raises(ops.InvalidArgument, match="is not a number"):
        ops.parse_decimal(text)


@pytest.mark.parametrize("text", ["0", "-1", "-0.5", "NaN", "Infinity", "-inf"])
def test_amounts_must_be_positive_and_finite(text: str) -> None:
    with pytest.raises(ops.InvalidArgument, match="must be a positive number") as info:
        ops.parse_decimal(text, "payout", "payout")
    assert info.value.field == "payout"
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)


def test_amounts_convert_to_base_units_exactly() -> None:
    assert ops.to_raw(Decimal("1.5"), 18) == 1_500_000_000_000_000_000
    assert ops.to_raw(Decimal("250.5"), 6) == 250_500_000
    assert ops.to_raw(Decimal("1e-18"), 18) == 1
    assert ops.parse_amount("3.5", 18) == 3_500_000_000_000_000_000
    with pytest.raises(ops.InvalidArgument, match="more than 6 decimal places"):
        ops.to_raw(Decimal("0.0000001"), 6)
    with pytest.raises(ops.InvalidArgument, match="too large"):
        ops.to_raw(Decimal(2**128), 0)
    # Long amounts stay exact (no rounding to the default 28-digit decimal context).
    long = "123456789012345678901.123456789012345678"
    assert ops.to_raw(Decimal(long), 18) == 123456789012345678901123456789012345678
    whole, frac = divmod(ops.UINT128_MAX, 10**9)
    assert ops.to_raw(Decimal(f"{whole}.{frac:09d}"), 9) == ops.UINT128_MAX
    with pytest.raises(ops.InvalidArgument, match="too large"):
        ops.to_raw(Decimal(f"{whole}.{frac + 1:09d}"), 9)


@pytest.mark.parametrize(
    ("raw", "decimals", "text"),
    [(0, 18, "0"), (10**18, 18, "1"), (1_500_000, 6, "1.5"), (1, 18, "0.000000000000000001")],
)
def test_format_units(raw: int, decimals: int, text: str) -> None:
    assert ops.format_units(raw, decimals) == text
    assert ops.Asset(ops.ETH, "ETH", decimals).format(raw) == f"{text} ETH"


def test_addresses_are_checked_and_checksummed() -> None:
    lower = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    assert ops.checksum(lower) == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    for bad in ("0xnope", "0x1234", "f39fd6e51aad88f6f4ce6ab8827279cfffb9226"):
        with pytest.raises(ops.InvalidArgument, match="is not an Ethereum address"):
            ops.checksum(bad, "holder")


def test_thresholds_use_the_model_scale_and_fit_int128() -> None:
    assert ops.to_fixed(2.5, 14, "threshold") == 40960
    assert ops.to_fixed(-1.25, 14, "threshold") == -20480
    assert ops.to_fixed(0.1, 3, "threshold") == 1  # nearest 1/8
    assert ops.from_fixed(40960, 14) == 2.5
    limit = (2**127 - 1) / 2**14
    assert ops.to_fixed(float(int(limit)), 14, "t") <= ops.INT128_MAX
    for bad in (1e40, -1e40):
        with pytest.raises(ops.InvalidArgument, match="does not fit int128") as info:
            ops.to_fixed(bad, 14, "threshold", "threshold")
        assert info.value.field == "threshold"
    with pytest.raises(ops.InvalidArgument, match="finite"):
        ops.to_fixed(float("nan"), 14, "threshold")


def test_payout_rules() -> None:
    c = ops.Comparison
    assert ops.payout_rule(14, pay_if="malignant") == (c.AT_MOST, 0, 0)
    assert ops.payout_rule(14, pay_if="benign") == (c.AT_LEAST, 0, 1)
    assert ops.payout_rule(14, None, c.AT_MOST, -0.5) == (c.AT_MOST, 0, -8192)
    with pytest.raises(ops.InvalidArgument, match="use only one of") as info:
        ops.payout_rule(14, "benign", None, 1.0)
    assert info.value.field == "pay_if"
    with pytest.raises(ops.InvalidArgument, match="not --pay-if-class and --comparison"):
        ops.payout_rule(14, pay_if_class=1, output=2, output_count=3)
    with pytest.raises(ops.InvalidArgument, match="give --pay-if, --pay-if-class, or both"):
        ops.payout_rule(14, None, c.AT_LEAST, None)
    with pytest.raises(ops.InvalidArgument, match="malignant' or 'benign"):
        ops.payout_rule(14, "maybe")
    with pytest.raises(ops.InvalidArgument, match="give --pay-if-class, not --comparison"):
        ops.payout_rule(14, None, c.ARG_MAX_IS, 0.0)


def test_payout_rules_name_the_output_they_read() -> None:
    c = ops.Comparison
    rule = ops.payout_rule(8, None, c.AT_LEAST, 0.5, output=2, output_count=3)
    assert rule == (c.AT_LEAST, 2, 128) and rule.output == 2
    assert rule.describe(8) == "output 2 >= 0.5 (raw 128)"
    arg_max = ops.payout_rule(8, pay_if_class=9, output_count=10)
    assert arg_max == (c.ARG_MAX_IS, 9, 0)
    assert arg_max.describe(8) == "class 9 is the arg-max of the outputs"
    with pytest.raises(ops.InvalidArgument) as info:
        ops.payout_rule(8, None, c.AT_MOST, 0.0, output=3, output_count=3, model="acme/cnn v1")
    assert (
        str(info.value) == "invalid payout rule AtMost(output 3): acme/cnn v1 has 3 outputs (0..2)"
    )
    assert info.value.field == "output"
    with pytest.raises(ops.InvalidArgument) as info:
        ops.payout_rule(14, pay_if_class=12, model="zkcare/breast_cancer_lr v1")
    assert str(info.value) == (
        "invalid payout rule ArgMaxIs(class 12): zkcare/breast_cancer_lr v1 has 1 output (0)"
    )
    assert info.value.field == "pay_if_class"


@pytest.mark.parametrize(
    ("accuracy", "raw"),
    [(0.875, 100), (0.8, 92), (0.95, 109), (1.0, 114), (0.0, 0), (0.5, 57), (0.1, 12)],
)
def test_min_metric_rounds_up(accuracy: float, raw: int) -> None:
    """Patients of the 114-patient benchmark to get right; never fewer than asked."""
    assert ops.min_metric(accuracy, 114) == raw


@pytest.mark.parametrize("accuracy", [1.5, -0.1, float("nan"), float("inf")])
def test_min_metric_outside_unit_interval(accuracy: float) -> None:
    with pytest.raises(ops.InvalidArgument, match=r"within \[0, 1\]"):
        ops.min_metric(accuracy, 114)


def test_failures_become_one_line() -> None:
    abi = ErrorABI(
        type="error",
        name="ModelRegistryUnknownVersion",
        inputs=[ABIType(name="modelId", type="bytes32"), ABIType(name="version", type="uint32")],
    )
    custom = CustomError(abi=abi, inputs={"version": 1, "modelId": b"\xab" * 32})
    assert ops.describe_failure(custom) == (
        "transaction reverted: ModelRegistryUnknownVersion(modelId=0x" + "ab" * 32 + ", version=1)"
    )
    assert ops.describe_failure(ContractLogicError("boom")) == "transaction reverted: boom"
    assert ops.describe_failure(ApeException("first\nsecond")) == "ApeException: first"


def test_error_hierarchy_and_messages() -> None:
    missing = ops.NotDeployed(4242, Path("/x/4242.json"))
    assert str(missing).startswith(
        "no zkcare deployment for chain 4242; run `ape run deploy all` first"
    )
    stale = ops.NotDeployed(1, Path("/x/1.json"), "ClaimSettlement has no code at 0x1")
    assert "not on chain 1 (ClaimSettlement has no code at 0x1)" in str(stale)
    assert isinstance(missing, ZkcareError) and isinstance(missing, LookupError)
    unknown = ops.UnknownEntity("pool", 42, "pool_id")
    assert str(unknown) == "unknown pool 42" and unknown.field == "pool_id"
    assert isinstance(unknown, ops.InvalidArgument) and isinstance(unknown, LookupError)
    assert issubclass(ops.NotPermitted, PermissionError)
    assert issubclass(ops.OperationRefused, ZkcareError)
