"""Compile a payout rule into the circuit: the proof's only public output is the 0/1 decision.

A product's rule reads one output against a threshold (``output[K] >= T`` / ``output[K] <= T``)
or asks whether class K is the arg-max. :func:`decide_graph` appends that rule to any ONNX
graph: the model's outputs are flattened into one row, then ``Gather`` + ``GreaterOrEqual`` /
``LessOrEqual`` (or ``ArgMax`` + ``Equal``) + ``Cast`` turn them into a single float ``0``/``1``,
which becomes the graph's only output. In the circuit (EZKL, output visibility ``public``) the
model's scores are then private witness values: no instance, no calldata word, no event
carries them. The salt wrapper (:mod:`prover.zk.salting`) is applied to the decided graph, so
the salted commitment still covers the inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from prover.exceptions import InvalidDecisionRule, UnsupportedModel
from prover.zk.salting import PREFIX, inspect_graph

DecisionKind = Literal["at_least", "at_most", "arg_max_is"]
#: The decided graph's only output.
DECISION_OUTPUT = f"{PREFIX}decision"
_RULE = re.compile(
    r"^\s*output\s*\[\s*(?P<k>\d+)\s*\]\s*(?P<op>>=|<=)\s*(?P<t>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class DecisionRule:
    """A rule on the model's flattened outputs: ``output[K] >= T``, ``<= T``, or arg-max is K."""

    kind: DecisionKind
    output: int
    threshold: float | None = None  # model units; None for arg_max_is

    @classmethod
    def parse(cls, text: str) -> DecisionRule:
        """``"output[K] >= T"`` or ``"output[K] <= T"`` (T in the model's own units)."""
        match = _RULE.match(text)
        if match is None:
            raise InvalidDecisionRule(text, "write it as 'output[K] >= T' or 'output[K] <= T'")
        threshold = float(match["t"])
        if not np.isfinite(threshold):
            raise InvalidDecisionRule(text, "the threshold must be a finite number")
        kind: DecisionKind = "at_least" if match["op"] == ">=" else "at_most"
        return cls(kind, int(match["k"]), threshold)

    @classmethod
    def arg_max(cls, k: int) -> DecisionRule:
        """Pay iff class ``k`` is the arg-max of the outputs (the lowest index wins ties)."""
        if k < 0:
            raise InvalidDecisionRule(f"class {k}", "the class index must be >= 0")
        return cls("arg_max_is", k)

    def describe(self) -> str:
        """``output[0] >= 0.5`` / ``arg-max == 2``."""
        if self.kind == "arg_max_is":
            return f"arg-max of the outputs == {self.output}"
        op = ">=" if self.kind == "at_least" else "<="
        return f"output[{self.output}] {op} {self.threshold:.10g}"

    def check(self, outputs: int) -> None:
        """Refuse an index the model does not have."""
        if self.kind == "arg_max_is" and outputs < 2:
            raise InvalidDecisionRule(
                self.describe(), "an arg-max rule needs a model with at least 2 outputs"
            )
        if not 0 <= self.output < outputs:
            what = "class" if self.kind == "arg_max_is" else "output"
            raise InvalidDecisionRule(
                self.describe(),
                f"{what} {self.output} is out of range: the model has {outputs} output(s) "
                f"(0..{outputs - 1})",
            )

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        """The float rule on flat output rows ``[n, outputs]`` -> ``n`` decisions (0/1)."""
        rows = np.atleast_2d(np.asarray(outputs, dtype=np.float64))
        if self.kind == "arg_max_is":
            return (np.argmax(rows, axis=1) == self.output).astype(np.int64)
        value = rows[:, self.output]
        assert self.threshold is not None
        hit = value >= self.threshold if self.kind == "at_least" else value <= self.threshold
        return hit.astype(np.int64)

    def margins(self, outputs: np.ndarray) -> np.ndarray:
        """How far each row is from flipping (model units): ``|output[K] - T|``, or for an
        arg-max rule the gap between the two largest outputs."""
        rows = np.atleast_2d(np.asarray(outputs, dtype=np.float64))
        if self.kind == "arg_max_is":
            top = np.sort(rows, axis=1)
            return np.asarray(top[:, -1] - top[:, -2])
        assert self.threshold is not None
        return np.asarray(np.abs(rows[:, self.output] - self.threshold))


def decide_graph(src: Path, dst: Path, rule: DecisionRule) -> Path:
    """Write ``src`` with ``rule`` appended to ``dst``; its only output is ``[1, 1]`` 0/1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _, outputs = inspect_graph(src)
    total = sum(o.size for o in outputs)
    rule.check(total)
    model = onnx.load(str(src))
    graph = model.graph
    if any(o.name.startswith(PREFIX) for o in graph.output):
        raise UnsupportedModel(src, f"the graph already has {PREFIX}* outputs (decided twice?)")
    consts: dict[str, np.ndarray] = {}
    nodes = []
    flats = []
    for i, out in enumerate(outputs):
        shape, flat = f"{PREFIX}flat_shape_{i}", f"{PREFIX}flat_{i}"
        consts[shape] = np.array([1, out.size], np.int64)
        nodes.append(helper.make_node("Reshape", [out.name, shape], [flat], name=flat))
        flats.append(flat)
    scores = f"{PREFIX}scores"
    if len(flats) == 1:
        nodes.append(helper.make_node("Identity", flats, [scores], name=scores))
    else:
        nodes.append(helper.make_node("Concat", flats, [scores], axis=1, name=scores))
    hit = f"{PREFIX}hit"
    if rule.kind == "arg_max_is":
        consts[f"{PREFIX}class"] = np.array([[rule.output]], np.int64)
        nodes += [
            helper.make_node(
                "ArgMax", [scores], [f"{PREFIX}argmax"], axis=1, keepdims=1, name=f"{PREFIX}am"
            ),
            helper.make_node("Equal", [f"{PREFIX}argmax", f"{PREFIX}class"], [hit], name=hit),
        ]
    else:
        assert rule.threshold is not None
        consts[f"{PREFIX}index"] = np.array([rule.output], np.int64)
        op = "GreaterOrEqual" if rule.kind == "at_least" else "LessOrEqual"
        nodes += [
            helper.make_node(
                "Gather",
                [scores, f"{PREFIX}index"],
                [f"{PREFIX}picked"],
                axis=1,
                name=f"{PREFIX}gather",
            ),
            helper.make_node(op, [f"{PREFIX}picked", f"{PREFIX}threshold"], [hit], name=hit),
        ]
    nodes.append(
        helper.make_node(
            "Cast", [hit], [DECISION_OUTPUT], to=TensorProto.FLOAT, name=f"{PREFIX}cast"
        )
    )
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    if rule.threshold is not None:
        inits.append(
            numpy_helper.from_array(np.array([[rule.threshold]], np.float32), f"{PREFIX}threshold")
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 12:  # GreaterOrEqual / LessOrEqual
        raise UnsupportedModel(src, f"ONNX opset {opset} is too old; export with opset >= 13")
    decided = helper.make_graph(
        list(graph.node) + nodes,
        graph.name or "model",
        list(graph.input),
        [helper.make_tensor_value_info(DECISION_OUTPUT, TensorProto.FLOAT, [1, 1])],
        list(graph.initializer) + inits,
    )
    out = helper.make_model(decided, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    out.producer_name = "zkcare decision wrapper"
    try:
        onnx.checker.check_model(out)
    except Exception as exc:
        raise UnsupportedModel(src, f"the decided graph is not valid ONNX: {exc}") from exc
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(out.SerializeToString())
    return dst
