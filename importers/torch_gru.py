"""The GRU op's torch module (its record's `torch_module`): one `torch.nn.GRU` per call with per-gate weights,
initialised from the op's gate parameters (layout converted once, here) and written back through the same
mapping. Frozen gates freeze the torch parameter they are a slice of; per-parameter learning rates ride on the
torch parameters as `learning_rate` (learn() makes optimizer parameter groups of them)."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
from torch import nn

from ..gru import BIAS_NAMES, WEIGHT_NAMES, gates_to_torch, torch_param_of, torch_to_gates
from ..ops import TorchModuleBinding
from ..program import Op, TensorRef

COLLECTION = "grus"  # state_dict keys: grus.<block>.weight_ih_l0, ...


def gru_torch_module(op: Op, params: Mapping[str, Any], dtype: torch.dtype, device: Any
                     ) -> Optional[TorchModuleBinding]:
    """An nn.GRU for a per-gate GRU call over trial axes (linear_before_reset 1) whose weights are parameters; None
    otherwise (the op's torch implementation then runs on the parameter tensors: ONNX-layout W, R, B keep their own
    names)."""
    if (op.args.get("weight_layout", "gates") != "gates" or op.args.get("axes", "trial") != "trial"
            or op.args.get("linear_before_reset", 1) not in (1, True)):  # (nn.GRU is linear_before_reset=1)
        return None
    names = {g: op.args[g].name for g in WEIGHT_NAMES + BIAS_NAMES if isinstance(op.args.get(g), TensorRef)}
    if any(n not in params for n in names.values()):
        return None
    gates = {g: np.asarray(params[n].value, dtype=float) for g, n in names.items()}
    I, H = gates["wts_ir"].shape
    gru = nn.GRU(I, H, bias="bias_ir" in gates, batch_first=True).to(dtype=dtype, device=device)

    def from_program(values: Mapping[str, Any]) -> None:
        per_gate = {g: np.asarray(values[n], dtype=float) for g, n in names.items()}
        with torch.no_grad():
            for k, v in gates_to_torch(per_gate).items():
                getattr(gru, k).copy_(torch.as_tensor(v, dtype=dtype))

    def to_program() -> Dict[str, np.ndarray]:
        tp = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in gru.named_parameters()}
        return {names[g]: v for g, v in torch_to_gates(tp).items() if g in names}

    from_program({n: params[n].value for n in names.values()})
    for g, n in names.items():  # frozen gates freeze the torch parameter they are a slice of
        tp = getattr(gru, torch_param_of(g))
        tp.requires_grad_(tp.requires_grad and params[n].learnable)
        if params[n].learning_rate is not None:
            tp.learning_rate = params[n].learning_rate  # read by learn() to build optimizer parameter groups
    x_name, h_ref = op.args["X"].name, op.args["h0"]
    last = op.args.get("output", "Y") == "Y_h"  # the call's value: Y, or its last step Y_h

    def forward(env: Mapping[str, Any]) -> torch.Tensor:
        x = env[x_name]
        h0 = x.new_zeros(H) if h_ref is None else torch.as_tensor(
            env[h_ref.name] if isinstance(h_ref, TensorRef) else h_ref, dtype=x.dtype, device=x.device)
        hx = h0.expand(x.shape[0], h0.shape[-1]).unsqueeze(0).contiguous()
        y = gru(x, hx)[0]
        return y[:, -1] if last else y

    return TorchModuleBinding(gru, COLLECTION, op.out.split(".")[0], tuple(names.values()), forward, to_program,
                              from_program)
