"""Shape inference for a Program by a one-trial dry run, and the edge shape checks it enables."""
from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import numpy as np

from .errors import ShapeError
from .program import Program

if TYPE_CHECKING:  # pragma: no cover
    from .lowering import Lowering


def _same_shape(a: Tuple[int, ...], b: Tuple[int, ...]) -> bool:
    """Equal shapes, ignoring axes of size 1 (PsyNeuLink writes (1, n) where modeci-mdf writes (n,))."""
    return int(np.prod(a)) == int(np.prod(b)) and [d for d in a if d != 1] == [d for d in b if d != 1]


def infer_shapes(program: Program, lowering: "Lowering") -> None:
    """Fill `program.shapes` (per-trial shape of every tensor) and check edges against declared port shapes."""
    from .importers.reference import runner_for

    runner = runner_for(program)
    inputs = {}
    lead = (1, 2) if program.sequence else (1,)  # sequences: a dry run over two time steps
    for name, spec in program.inputs.items():
        base = spec.default if spec.default is not None else np.zeros(spec.shape or ())
        inputs[name] = np.broadcast_to(np.asarray(base, dtype=float), lead + np.shape(base))
    with np.errstate(all="ignore"):  # zeros as inputs: a division by zero here is not the model's fault
        env = runner.run(inputs, keep_env=True)["__env__"]
    program.shapes = {k: tuple(np.shape(v)[len(lead):] if k in runner.batched else np.shape(v))
                      for k, v in env.items() if not isinstance(v, list)}
    for eid, e in lowering.edges.items():
        port = (lowering.nodes[e["receiver"]].get("input_ports") or {}).get(e["receiver_port"]) or {}
        if port.get("shape") is None:
            continue
        src = lowering.port_tensor.get((e["sender"], e["sender_port"]))
        got = program.shapes.get(src)
        want = tuple(port["shape"])
        if got is not None and not _same_shape(got, want):
            raise ShapeError(f"edge '{eid}' carries shape {got} from '{e['sender']}.{e['sender_port']}' but input "
                             f"port '{e['receiver']}.{e['receiver_port']}' has shape {want}",
                             where=f"graph '{lowering.gid}'")
