"""Fixture names: one scope per name across the suite.

ape's pytest plugin snapshots and reverts the chain per fixture scope and tracks fixtures by
name over the whole session. A module-scoped ``settlement`` in one folder once made the
session-scoped ``settlement`` of ``tests/contracts`` lose its state (74 contract tests failed,
only when the whole suite was collected).
"""

from __future__ import annotations

import ast
from collections import defaultdict

from prover.paths import ROOT


def _fixtures() -> dict[str, set[tuple[str, str]]]:
    """name -> {(scope, file)} for every ``@pytest.fixture`` under tests/."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in (ROOT / "tests").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                call = deco if isinstance(deco, ast.Call) else None
                target = call.func if call else deco
                if not (isinstance(target, ast.Attribute) and target.attr == "fixture"):
                    continue
                scope = "function"
                for kw in call.keywords if call else []:
                    if kw.arg == "scope" and isinstance(kw.value, ast.Constant):
                        scope = str(kw.value.value)
                found[node.name].add((scope, str(path.relative_to(ROOT))))
    return found


def test_a_fixture_name_has_one_scope() -> None:
    clashes = {
        name: sorted(places)
        for name, places in _fixtures().items()
        if len({scope for scope, _ in places}) > 1
    }
    assert not clashes, f"fixture names reused with another scope: {clashes}"
