"""EZKL writes ``polycommit`` as ``KZGCommit``: the build's defense-in-depth check maps the names."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from prover.exceptions import CircuitError
from prover.models.breast_cancer import DIAGNOSTIC_MODEL
from prover.zk import ezkl_api
from prover.zk.circuit import CircuitSpec, _check_settings_visibility

SPEC = CircuitSpec(name="visibility_names")


def _written(spec: CircuitSpec, tmp_path: Path) -> dict:
    path = tmp_path / "settings.json"
    ezkl_api.gen_settings(DIAGNOSTIC_MODEL, path, spec.run_args())
    return json.loads(path.read_text())


@pytest.mark.parametrize("visibility", ["hashed", "polycommit"])
def test_the_written_visibility_matches_the_spec(visibility: str, tmp_path: Path) -> None:
    spec = replace(SPEC, input_visibility=visibility)
    settings = _written(spec, tmp_path)
    _check_settings_visibility(settings, spec)  # no error: EZKL wrote what was asked


def test_a_different_written_visibility_is_refused(tmp_path: Path) -> None:
    settings = _written(replace(SPEC, input_visibility="polycommit"), tmp_path)
    assert settings["run_args"]["input_visibility"] == "KZGCommit"
    with pytest.raises(
        CircuitError, match="EZKL wrote input visibility 'KZGCommit', expected 'hashed'"
    ):
        _check_settings_visibility(settings, SPEC)
