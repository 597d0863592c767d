import math
from pathlib import Path

import numpy as np
import pytest

from prover.exceptions import InvalidPatientRecord
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    DIAGNOSTIC_PREPROCESS,
    Preprocessor,
    float_logits,
    sha256_file,
    train_diagnostic_model,
    validate_record,
)


def test_training_is_deterministic_and_reproduces_the_committed_model(tmp_path: Path) -> None:
    trained = train_diagnostic_model(tmp_path)
    assert sha256_file(trained.onnx_path) == sha256_file(DIAGNOSTIC_MODEL)
    assert sha256_file(trained.preprocess_path) == sha256_file(DIAGNOSTIC_PREPROCESS)
    assert trained.accuracy >= 0.95


def test_held_out_accuracy_of_the_committed_model(dataset) -> None:
    pre = Preprocessor.load()
    z = np.array([pre.transform(list(r)) for r in dataset.x_test])
    predicted_benign = float_logits(DIAGNOSTIC_MODEL, z) > 0
    accuracy = float(np.mean(predicted_benign == (dataset.y_test == 1)))
    assert len(dataset.x_test) == 114 and len(dataset.x_train) == 455
    assert accuracy >= 0.95


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([1.0] * 29, "expected 30 features, got 29"),
        ([1.0] * 31, "expected 30 features, got 31"),
        ([1.0] * 29 + [math.nan], "feature 29 is nan"),
        ([math.inf] + [1.0] * 29, "feature 0 is inf"),
        ([1.0] * 5 + [-0.5] + [1.0] * 24, "feature 5 is -0.5; measurements are >= 0"),
        (["12.1"] + [1.0] * 29, "feature 0 is str, not a number"),
        ([True] + [1.0] * 29, "feature 0 is bool, not a number"),
        ("not a list", "expected a list of 30 numbers"),
    ],
)
def test_bad_records_get_specific_errors(record, message) -> None:
    with pytest.raises(InvalidPatientRecord, match=message.replace("(", r"\(")):
        validate_record(record)


def test_implausible_values_are_rejected_with_the_feature_name(dataset) -> None:
    record = list(dataset.x_test[0])
    record[3] = 1e9  # mean area of 1e9 square units
    with pytest.raises(InvalidPatientRecord, match="feature 3 \\(mean area\\)"):
        Preprocessor.load().transform(record)
