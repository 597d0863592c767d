import math
import re
from pathlib import Path

import numpy as np
import pytest

from prover.exceptions import InvalidPatientRecord
from prover.models.breast_cancer import (
    DIAGNOSTIC_MODEL,
    DIAGNOSTIC_PREPROCESS,
    float_logits,
    load_preprocessor,
    sha256_file,
    train_diagnostic_model,
)
from prover.models.card import ModelCard


def test_training_is_deterministic_and_reproduces_the_committed_model(tmp_path: Path) -> None:
    trained = train_diagnostic_model(tmp_path)
    assert sha256_file(trained.onnx_path) == sha256_file(DIAGNOSTIC_MODEL)
    assert sha256_file(trained.preprocess_path) == sha256_file(DIAGNOSTIC_PREPROCESS)
    assert trained.accuracy >= 0.95


def test_held_out_accuracy_of_the_committed_model(dataset) -> None:
    pre = load_preprocessor()
    z = np.array([pre.transform(list(r)) for r in dataset.x_test])
    predicted_benign = float_logits(DIAGNOSTIC_MODEL, z) > 0
    accuracy = float(np.mean(predicted_benign == (dataset.y_test == 1)))
    assert len(dataset.x_test) == 114 and len(dataset.x_train) == 455
    assert accuracy >= 0.95


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("short", "model breast_cancer_lr takes 30 features, got 29"),
        ("long", "model breast_cancer_lr takes 30 features, got 31"),
        ("nan", "features[29] (worst fractal dimension) is not a finite number"),
        ("inf", "features[0] (mean radius) is not a finite number"),
        ("negative", "features[5] (mean compactness) is negative; the card allows [0, "),
        ("str", "features[0] (mean radius) is not a number"),
        ("bool", "features[0] (mean radius) is not a number"),
        ("huge", "features[3] (mean area) is outside the allowed range ["),
        ("text", "expected a list of 30 numbers"),
    ],
)
def test_bad_records_get_specific_errors(diagnostic_bundle, dataset, record, message) -> None:
    good = [float(v) for v in dataset.x_test[0]]
    bad = {
        "short": good[:29],
        "long": good + [1.0],
        "nan": good[:29] + [math.nan],
        "inf": [math.inf] + good[1:],
        "negative": good[:5] + [-0.5] + good[6:],
        "str": ["12.1"] + good[1:],
        "bool": [True] + good[1:],
        "huge": good[:3] + [1e9] + good[4:],
        "text": "not a list",
    }[record]
    card = ModelCard.of(diagnostic_bundle)
    card.check_record(good)
    with pytest.raises(InvalidPatientRecord, match=re.escape(message)):
        card.check_record(bad)


def test_every_held_out_patient_fits_the_built_in_card(diagnostic_bundle, dataset) -> None:
    card = ModelCard.of(diagnostic_bundle)
    for record in dataset.x_test:
        card.check_record([float(v) for v in record])
    assert card.input.ranges_source.startswith("calibration min/max")
