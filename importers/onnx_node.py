"""What an ONNX import handler sees and returns: `NodeImport` (one ONNX node, its inputs as `Tensor`s) and
`Emitted` (one MDF function). Handlers live in the op records (`OpDef.onnx_import`, mdfbridge/ops/from_onnx.py)
and, for ONNX ops the registry has no op for, in importers/onnx_values.py; each turns one ONNX node into one
MDF function.

Per-trial frame: with `batch_axis=True` (the default) the leading axis of every tensor computed from the graph
inputs is mdfbridge's trial axis, so shapes and attributes are rewritten per trial (an ONNX Softmax over axis 1
of (N, C) is a softmax over axis 0 of each trial's (C,)), constants lose the leading axes that only broadcast
against the batch, and whatever would mix trials (an axis-0 reduction, a transpose moving axis 0) is refused.
With `batch_axis=False` every ONNX tensor is one trial's value and attributes are kept as written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from onnx import helper

from ..errors import UnsupportedError

# what error messages suggest for a graph whose ops fix, move or mix the batch axis (Python API and CLI)
NO_BATCH_AXIS = ("import with batch_axis=False (CLI: mdfbridge convert --no-batch-axis) to treat each ONNX tensor as "
                 "one trial")


@dataclass
class Tensor:
    """An ONNX tensor as the importer sees it: computed from inputs ('dynamic'), constant, or shape-derived."""

    name: str
    kind: str  # dynamic | const | shape
    shape: Tuple[int, ...] = ()  # per-trial shape (dynamic), full shape (const)
    value: Optional[np.ndarray] = None  # const values
    producer: Optional[Tuple[str, str]] = None  # (MDF node id, output port id) of a dynamic tensor
    producer_op: str = ""  # the registry function computing a dynamic tensor ("" for inputs and value expressions)
    stored_dtype: str = ""  # a constant Cast to float from a float16/bfloat16 initializer: that dtype

    @property
    def rank(self) -> int:
        """Rank of the per-trial (dynamic) or full (const) value."""
        return len(self.shape)

    def with_value(self, value: np.ndarray) -> "Tensor":
        """A const tensor with another value (and shape)."""
        v = np.asarray(value)
        return Tensor(self.name, "const", tuple(v.shape), v)


@dataclass
class Emitted:
    """One MDF function: a registry function with args, or a `value` expression over the arg names.

    Arg values are `Tensor`s (dynamic ones become input ports, constants parameters or inline numbers) or
    static values (ONNX attributes). `learnable` names the args whose constants training may change by their
    gradients, `running` those it updates otherwise (BatchNormalization's running statistics). `extra`:
    (output index, function) for the node's other outputs (ONNX RNN's Y_h, ...), computed in the same MDF node
    from the same tensor args (their static args may differ).
    """

    function: Optional[str]
    args: Dict[str, Any]
    value: Optional[str] = None
    learnable: Tuple[str, ...] = ()
    running: Tuple[str, ...] = ()
    extra: Tuple[Tuple[int, "Emitted"], ...] = ()


@dataclass
class NodeImport:
    """What a handler sees of one ONNX node."""

    node: Any  # onnx.NodeProto
    opset: int
    batch_axis: bool
    inputs: List[Optional[Tensor]]
    out_shapes: List[Optional[Tuple[int, ...]]]  # per-trial shapes of the outputs (from the probe runs)
    used_outputs: List[bool] = field(default_factory=list)
    batch_problem: Optional[str] = None  # set when the probe runs show the output lost the batch axis

    @property
    def op_type(self) -> str:
        """The ONNX op type."""
        return self.node.op_type

    def attr(self, name: str, default: Any = None) -> Any:
        """An attribute's value (bytes decoded), or `default`."""
        for a in self.node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def fail(self, message: str) -> UnsupportedError:
        """An error naming the ONNX node, op type and opset."""
        return UnsupportedError(f"ONNX {self.op_type} (opset {self.opset}): {message}",
                                where=f"ONNX node '{self.node.name or self.node.output[0]}'")

    def input(self, i: int) -> Optional[Tensor]:
        """Input i, or None when it is absent or empty (an omitted optional input)."""
        return self.inputs[i] if i < len(self.inputs) else None

    def dynamic(self, i: int, what: str = "") -> Tensor:
        """Input i, which must be computed from the graph inputs."""
        t = self.input(i)
        if t is None or t.kind != "dynamic":
            raise self.fail(f"input {i}{' (' + what + ')' if what else ''} must be computed from the graph inputs")
        return t

    def const(self, i: int, what: str = "") -> Optional[np.ndarray]:
        """The constant value of input i (None when absent); shape-derived or computed inputs are refused."""
        t = self.input(i)
        if t is None:
            return None
        if t.kind != "const":
            raise self.fail(f"input {i}{' (' + what + ')' if what else ''} must be a constant")
        return t.value

    def full_rank(self, t: Tensor) -> int:
        """The ONNX rank of a tensor (batch axis included for dynamic ones)."""
        return t.rank + (1 if self.batch_axis and t.kind == "dynamic" else 0)

    def axis(self, axis: int, t: Tensor) -> int:
        """An ONNX axis of tensor t -> the per-trial axis (refusing the batch axis)."""
        r = self.full_rank(t)
        a = int(axis) + (r if int(axis) < 0 else 0)
        if not 0 <= a < r:
            raise self.fail(f"axis {axis} is out of range for rank {r}")
        if self.batch_axis and t.kind == "dynamic":
            if a == 0:
                raise self.fail(f"operates across the batch axis (axis 0), which mixes trials; {NO_BATCH_AXIS}")
            return a - 1
        return a

    def per_trial_const(self, t: Tensor, against: int) -> Tensor:
        """A constant broadcast against a dynamic tensor of ONNX rank `against`: drop axes facing the batch axis."""
        if not self.batch_axis or t.kind != "const" or t.rank < against:
            return t
        lead = t.rank - against + 1
        if any(d != 1 for d in t.shape[:lead]):
            raise self.fail(f"constant '{t.name}' of shape {t.shape} spans the batch axis")
        assert t.value is not None  # a const tensor has its value
        return t.with_value(t.value.reshape(t.shape[lead:]))

    def call(self, function: str, args: Dict[str, Any], learnable: Sequence[str] = (),
             running: Sequence[str] = ()) -> Emitted:
        """The registry function `function` (an op's name or alias) on `args`; `learnable` and `running` name the
        args whose constants training changes (`Emitted`; default none)."""
        return Emitted(function, args, learnable=tuple(learnable), running=tuple(running))

    def broadcast_args(self, names: Sequence[str]) -> Dict[str, Tensor]:
        """The inputs, named `names`, of an elementwise op in the per-trial frame (dynamic ones must agree in rank)."""
        given = [self.input(i) for i in range(len(self.node.input))]
        ops = [o for o in given if o is not None]
        if len(ops) != len(given):
            raise self.fail("missing input")
        dyn = [o for o in ops if o.kind == "dynamic"]
        if not dyn:
            raise self.fail("no input is computed from the graph inputs")
        if self.batch_axis and len({o.rank for o in dyn}) > 1:  # ONNX aligns trailing axes: batch axes would not meet
            raise self.fail(f"inputs of ranks {[o.rank + 1 for o in dyn]} computed from the graph inputs: "
                            f"broadcasting them aligns the batch axis of one with another axis of the other "
                            f"({NO_BATCH_AXIS})")
        against = max(self.full_rank(o) for o in dyn)
        out = {}
        for name, o in zip(names, ops):
            if o.kind == "shape":
                raise self.fail("an input derived from tensor shapes" + (
                    f" ({NO_BATCH_AXIS}: every shape is then fixed, what is computed from shapes a constant)"
                    if self.batch_axis else ""))
            out[name] = self.per_trial_const(o, against)
        return out
