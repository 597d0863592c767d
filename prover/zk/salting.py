"""Salt any ONNX graph: the toolkit, not the model, makes every input commitment hiding.

EZKL Poseidon-hashes each ``hashed`` input tensor into one public commitment. A model's own
inputs alone give an *unsalted* commitment, which anyone can brute-force for low-entropy
records. :func:`salt_graph` rewrites the graph so that each original input ``x`` of shape
``S`` becomes a flat input ``[1, size(S) + SALT_LIMBS]``: the record followed by the salt
limbs. Inside the graph a ``Slice`` keeps the first ``size(S)`` values and a ``Reshape`` restores
``S``, so the salt enters the commitment but never the computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from prover.exceptions import UnsupportedModel
from prover.zk.commitment import SALT_LIMBS

#: Prefix of the names the wrapper adds; a graph already using it was wrapped before.
PREFIX = "zkcare_"
_MIN_OPSET = 10  # Slice with tensor inputs


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: its name and static shape (batch dimension fixed to 1)."""

    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of values (the product of the shape)."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class SaltedGraph:
    """The wrapped model: where it is, its original inputs and outputs, its salt limbs."""

    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    salt_limbs: int


def _static_shape(path: Path, kind: str, value: object) -> TensorInfo:
    from onnx import TensorProto, ValueInfoProto

    assert isinstance(value, ValueInfoProto)
    ttype = value.type.tensor_type
    if kind == "input" and ttype.elem_type != TensorProto.FLOAT:
        raise UnsupportedModel(
            path, f"input {value.name!r} is not float32; export the model with float inputs"
        )
    dims: list[int] = []
    for i, dim in enumerate(ttype.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        elif i == 0:
            dims.append(1)  # a symbolic batch dimension: one record per proof
        else:
            label = dim.dim_param or "?"
            raise UnsupportedModel(
                path,
                f"{kind} {value.name!r} has a symbolic dimension {label!r} at axis {i}; "
                "export the model with a fixed shape",
            )
    return TensorInfo(value.name, tuple(dims))


def inspect_graph(path: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Read an ONNX file's inputs and outputs (static shapes) or say why it cannot be used."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # DecodeError, OSError, ...
        raise UnsupportedModel(path, f"not a readable ONNX file ({type(exc).__name__})") from exc
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = tuple(
        _static_shape(path, "input", v) for v in graph.input if v.name not in initializers
    )
    outputs = tuple(_static_shape(path, "output", v) for v in graph.output)
    if not inputs:
        raise UnsupportedModel(path, "the graph has no inputs")
    if not outputs:
        raise UnsupportedModel(path, "the graph has no outputs")
    return inputs, outputs


def salt_graph(src: Path, dst: Path, salt_limbs: int = SALT_LIMBS) -> SaltedGraph:
    """Write ``src`` wrapped with salt inputs to ``dst`` (see the module docstring)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs, outputs = inspect_graph(src)
    model = onnx.load(str(src))
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < _MIN_OPSET:
        raise UnsupportedModel(src, f"ONNX opset {opset} is too old; export with opset >= 13")
    if any(v.name.startswith(PREFIX) for v in graph.input):
        raise UnsupportedModel(src, f"the graph already has {PREFIX}* inputs (wrapped twice?)")
    nodes = []
    initializers = []
    new_inputs = []
    for i, info in enumerate(inputs):
        flat = f"{PREFIX}input_{i}"
        new_inputs.append(
            helper.make_tensor_value_info(flat, TensorProto.FLOAT, [1, info.size + salt_limbs])
        )
        consts = {
            f"{PREFIX}starts_{i}": [0],
            f"{PREFIX}ends_{i}": [info.size],
            f"{PREFIX}axes_{i}": [1],
            f"{PREFIX}shape_{i}": list(info.shape),
        }
        initializers += [
            numpy_helper.from_array(np.array(v, np.int64), k) for k, v in consts.items()
        ]
        nodes += [
            helper.make_node(
                "Slice",
                [flat, f"{PREFIX}starts_{i}", f"{PREFIX}ends_{i}", f"{PREFIX}axes_{i}"],
                [f"{PREFIX}record_{i}"],
                name=f"{PREFIX}slice_{i}",
            ),
            helper.make_node(
                "Reshape",
                [f"{PREFIX}record_{i}", f"{PREFIX}shape_{i}"],
                [info.name],
                name=f"{PREFIX}reshape_{i}",
            ),
        ]
    wrapped = helper.make_graph(
        nodes + list(graph.node),
        graph.name or "model",
        new_inputs,
        [helper.make_tensor_value_info(o.name, TensorProto.FLOAT, list(o.shape)) for o in outputs],
        initializers + list(graph.initializer),
    )
    out = helper.make_model(wrapped, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    out.producer_name = "zkcare salt wrapper"
    try:
        onnx.checker.check_model(out)
    except Exception as exc:
        raise UnsupportedModel(src, f"the salted graph is not valid ONNX: {exc}") from exc
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(out.SerializeToString())
    return SaltedGraph(dst, inputs, outputs, salt_limbs)
