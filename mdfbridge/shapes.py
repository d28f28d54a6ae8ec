"""Shape inference for a Program from each op's shape rule (mdfbridge.ops), and the edge shape checks it
enables."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np

from . import limits
from .errors import MdfBridgeError, ShapeError
from .executor import batched_tensors
from .ops import get_op
from .ops.shape_rules import Shape, broadcast
from .program import Op, Program, TensorRef

_TIME = 2  # the stand-in length of a sequence's time axis during inference

if TYPE_CHECKING:  # pragma: no cover
    from .lowering import Lowering


def _same_shape(a: Tuple[int, ...], b: Tuple[int, ...]) -> bool:
    """Equal shapes, ignoring axes of size 1 (PsyNeuLink writes (1, n) where modeci-mdf writes (n,))."""
    return a == b or (math.prod(a) == math.prod(b) and [d for d in a if d != 1] == [d for d in b if d != 1])


def _fits_port(got: Tuple[int, ...], want: Tuple[int, ...]) -> bool:
    """An edge's value fits a port of shape `want`: the same shape (up to axes of size 1), or one that numpy
    broadcasting makes `want` of (modeci-mdf's engine passes a (1,) or scalar value into a (5,) port as it is; the
    node's expressions then broadcast it)."""
    if got == want or _same_shape(got, want):
        return True
    try:
        return tuple(np.broadcast_shapes(got, want)) == tuple(want)
    except ValueError:
        return False


def _rule_args(op: Op, opdef: Any, shapes: Dict[str, Tuple[int, ...]]) -> Dict[str, Any]:
    """The op's arguments as its shape rule reads them: tensors as Shape, attributes as values."""
    out: Dict[str, Any] = {k: v for k, v in opdef.defaults.items() if k in opdef.attrs}
    for k, v in op.args.items():
        if isinstance(v, TensorRef):
            out[k] = Shape(shapes[v.name])
        elif isinstance(v, list) and v and all(isinstance(x, TensorRef) for x in v):
            out[k] = [Shape(shapes[x.name]) for x in v]
        elif k in opdef.attrs or v is None:
            out[k] = v
        else:
            out[k] = Shape(() if type(v) is float or type(v) is int else np.shape(v))
    return out


def op_shape(op: Op, shapes: Dict[str, Tuple[int, ...]]) -> Tuple[int, ...]:
    """The per-trial shape of `op`'s output given the shapes of the tensors it reads; ShapeError naming the node
    and the argument shapes when they do not fit."""
    opdef = get_op(op.fn)
    if opdef is None:
        raise ShapeError(f"function '{op.fn}' is not a registered op", where=f"node '{op.node}'")
    args = _rule_args(op, opdef, shapes)
    rule = opdef.shape or (broadcast if opdef.elementwise else None)
    if rule is None:
        raise ShapeError(f"op '{op.fn}' has no shape rule (an mdfbridge bug)", where=f"node '{op.node}'")
    try:
        return tuple(map(int, rule(args)))
    except MdfBridgeError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as exc:
        got = {k: (list(v) if isinstance(v, list) else tuple(v)) for k, v in args.items()
               if isinstance(v, (Shape, list))}
        raise ShapeError(f"{op.fn} failed on argument shapes {got}: {exc}", where=f"node '{op.node}'") from None


def infer_shapes(program: Program, lowering: Optional["Lowering"] = None) -> None:
    """Fill `program.shapes` (per-trial shape of every tensor; sequence programs: per time step) from the ops'
    shape rules, and check edges against declared port shapes when the `lowering` that built it is given."""
    # ops of a sequence program see batched tensors per trial as (time, ...): infer with a stand-in length
    lead = (_TIME,) if program.sequence else ()
    shapes: Dict[str, Tuple[int, ...]] = {"dt": ()}
    for spec in program.inputs.values():
        shape = tuple(np.shape(spec.default)) if spec.default is not None else tuple(int(d) for d in spec.shape or ())
        limits.check_elements(math.prod(shape), f"input port '{spec.port}' (shape {shape})",
                              where=f"node '{spec.node}'")
        shapes[f"{spec.node}.{spec.port}"] = lead + shape
    shapes.update({k: tuple(np.shape(p.value)) for k, p in program.params.items()})
    shapes.update({k: lead + tuple(np.shape(s.initial)) for k, s in program.states.items()})
    batched = batched_tensors(program)
    sources = lowering.op_sources if lowering is not None else {}
    for op in program.ops:
        shape = op_shape(op, shapes)
        _check_size(op, shape, sources)
        if lead and op.out in batched and shape[:1] != lead:
            raise ShapeError(f"{op.fn} of a sequence program lost the time axis (shape {shape})",
                             where=f"node '{op.node}'")
        shapes[op.out] = shape
    program.shapes = {k: v[len(lead):] if k in batched else v for k, v in shapes.items()}
    if lowering is not None:
        _check_edges(program, lowering)


def _check_size(op: Op, shape: Tuple[int, ...], sources: Dict[str, Tuple[str, str]]) -> None:
    """Refuse an op whose per-trial result would exceed max_elements (before anything runs it), naming the node,
    the expression it comes from (when `sources`, op output -> (place, expression), knows it) and the limit."""
    n, bound = math.prod(shape), limits.current().max_elements
    if n <= bound:
        return
    from .ops.budget import ExpressionLimitError, quoted

    opdef = get_op(op.fn)
    label = opdef.expr_names[0] if opdef is not None and opdef.expr_names else op.fn
    place, source = sources.get(op.out, (f"node '{op.node}'", ""))
    raise ExpressionLimitError((f"expression {quoted(source)}: " if source else "")
                               + f"the result of {label}, '{op.out}' (shape {shape}, per trial), would have {n:,} "
                               f"elements, over the limit max_elements={bound:,} (raise it with --limit "
                               f"max_elements=N or {limits.ENV_VAR})", where=place)


def _check_edges(program: Program, lowering: "Lowering") -> None:
    for eid, e in lowering.edges.items():
        port = (lowering.nodes[e["receiver"]].get("input_ports") or {}).get(e["receiver_port"]) or {}
        if port.get("shape") is None:
            continue
        src = lowering.port_tensor.get((e["sender"], e["sender_port"]))
        got = program.shapes.get(src) if src is not None else None
        want = tuple(port["shape"])
        if got is not None and not _fits_port(got, want):
            raise ShapeError(f"edge '{eid}' carries shape {got} from '{e['sender']}.{e['sender_port']}' but input "
                             f"port '{e['receiver']}.{e['receiver_port']}' has shape {want}",
                             where=f"graph '{lowering.gid}'")


def fit_unit_axes(arr: np.ndarray, lead: int, want: Tuple[int, ...]) -> Optional[np.ndarray]:
    """`arr` (`lead` leading axes, then per-trial values) reshaped to per-trial shape `want` when the two differ
    only in leading axes of length 1 (PsyNeuLink's 2-D variables: (1, n) ports fed (trials, n) data, and back);
    else None."""
    def core(shape: Tuple[int, ...]) -> Tuple[int, ...]:
        while shape and shape[0] == 1:
            shape = shape[1:]
        return shape
    if core(tuple(arr.shape[lead:])) != core(tuple(want)):
        return None
    return arr.reshape(tuple(arr.shape[:lead]) + tuple(want))
