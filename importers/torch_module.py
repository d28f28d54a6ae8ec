"""`Program` -> `torch.nn.Module`: one `nn.Parameter` per learnable parameter (named after its projection),
buffers for fixed ones; forward runs a whole minibatch at once."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
from torch import nn

from ..executor import compile_program, execute
from ..program import Program

log = logging.getLogger(__name__)


class ProgramModule(nn.Module):
    """A torch module computing a Program; `forward(inputs)` maps input names to (batch, ...) tensors."""

    def __init__(self, program: Program, dtype: torch.dtype = torch.float64,
                 device: Optional[torch.device | str] = None) -> None:
        super().__init__()
        self.program = program
        self.dtype = dtype
        self.keys: Dict[str, str] = {}  # program param name -> attribute / state_dict key
        self.grus = nn.ModuleDict()  # one torch.nn.GRU per GRU block, weights converted once, here
        self.gru_params: Dict[str, Dict[str, str]] = {}  # block -> gate weight name -> program param name
        for op in program.ops:
            if op.kind == "call" and op.fn == "GRU":
                self._add_gru(op, dtype, device)
        consumed = {n for names in self.gru_params.values() for n in names.values()}
        for name, p in program.params.items():
            if name in consumed:
                continue
            key = p.key
            if key in self.keys.values() or hasattr(self, key):
                key = name.replace(".", "__")
            self.keys[name] = key
            value = torch.as_tensor(np.asarray(p.value), dtype=dtype, device=device)
            if p.learnable:
                param = nn.Parameter(value.clone())
                if p.learning_rate is not None:
                    param.learning_rate = p.learning_rate  # read by learn() to build optimizer parameter groups
                self.register_parameter(key, param)
            else:  # fixed projection matrices are saved with the weights; other constants are not
                self.register_buffer(key, value.clone(), persistent=p.name.endswith(".matrix"))
        self.steps, self.batched = compile_program(program, "torch")
        self.steps = [(op, self._gru_step(op) if op.kind == "call" and op.fn == "GRU" else f) for op, f in self.steps]
        self._input_keys = [(name, s.port, f"{s.node}.{s.port}") for name, s in program.inputs.items()]
        self.to(device)

    def _add_gru(self, op: Any, dtype: torch.dtype, device: Any) -> None:
        """A torch.nn.GRU for a GRU op, initialised from the op's per-gate parameters (layout converted once)."""
        from ..gru import BIAS_NAMES, WEIGHT_NAMES, gates_to_torch, torch_param_of

        prog = self.program
        names = {g: op.args[g].name for g in WEIGHT_NAMES + BIAS_NAMES if op.args.get(g) is not None}
        gates = {g: np.asarray(prog.params[n].value, dtype=float) for g, n in names.items()}
        I, H = gates["wts_ir"].shape
        gru = nn.GRU(I, H, bias="bias_ir" in gates, batch_first=True).to(dtype=dtype, device=device)
        with torch.no_grad():
            for k, v in gates_to_torch(gates).items():
                getattr(gru, k).copy_(torch.as_tensor(v, dtype=dtype))
        for g, n in names.items():  # frozen gates freeze the torch parameter they are a slice of
            tp = getattr(gru, torch_param_of(g))
            tp.requires_grad_(tp.requires_grad and prog.params[n].learnable)
            rate = prog.params[n].learning_rate
            if rate is not None:
                tp.learning_rate = rate  # read by learn() to build optimizer parameter groups
        block = op.out.split(".")[0]
        self.grus[block] = gru
        self.gru_params[block] = names

    def _gru_step(self, op: Any) -> Any:
        """The closure running a GRU op through its nn.GRU (h0 broadcast to the batch)."""
        gru = self.grus[op.out.split(".")[0]]
        x_name, h_ref = op.args["X"].name, op.args["h0"]

        def run(env: Dict[str, Any]) -> torch.Tensor:
            x = env[x_name]
            h0 = torch.as_tensor(env[h_ref.name] if hasattr(h_ref, "name") else h_ref, dtype=x.dtype, device=x.device)
            hx = h0.expand(x.shape[0], h0.shape[-1]).unsqueeze(0).contiguous()
            return gru(x, hx)[0]
        return run

    def param_tensors(self) -> Dict[str, torch.Tensor]:
        """Program param name -> its parameter/buffer tensor."""
        params, buffers = self._parameters, self._buffers
        return {name: params[key] if key in params else buffers[key] for name, key in self.keys.items()}

    def forward(self, inputs: Mapping[str, torch.Tensor], steps: int = 1, dt: float = 1.0) -> Dict[str, torch.Tensor]:
        """Outputs (name -> (batch, ...)) after `steps` steps on a batch of inputs (name -> (batch, ...))."""
        prog = self.program
        env: Dict[str, Any] = self.param_tensors()
        batch, missing = None, []
        for name, port, key in self._input_keys:
            x = inputs.get(name)
            if x is None:
                x = inputs.get(port)
            if x is None:
                missing.append((name, key))
                continue
            env[key] = x
            batch = x.shape[0]
        batch = batch or 1
        device = next(iter(env.values())).device if env else None
        for name, key in missing:
            spec = prog.inputs[name]
            base = spec.default if spec.default is not None else np.zeros(spec.shape or ())
            env[key] = torch.as_tensor(base, dtype=self.dtype, device=device).expand((batch,) + base.shape)
        for name, st in prog.states.items():
            init = torch.as_tensor(st.initial, dtype=self.dtype, device=device)
            env[name] = init.expand((batch,) + tuple(init.shape))
        for step in range(steps):
            env["dt"] = 0.0 if step == 0 else float(dt)
            execute(self.steps, env)
            if prog.states:
                env.update({name: env[st.update] for name, st in prog.states.items()})
        return {k: env[t] if t in self.batched else self._broadcast(env[t], batch) for k, t in prog.outputs.items()}

    def _broadcast(self, v: Any, batch: int) -> torch.Tensor:
        v = torch.as_tensor(v, dtype=self.dtype)
        return v.expand((batch,) + tuple(v.shape))

    def write_to_program(self) -> None:
        """Copy the module's current parameter values into the Program's parameter table."""
        from ..gru import torch_to_gates

        with torch.no_grad():
            for name, t in self.param_tensors().items():
                self.program.params[name].value = t.detach().cpu().numpy().astype(np.float64).copy()
            for block, names in self.gru_params.items():
                tp = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in self.grus[block].named_parameters()}
                for g, v in torch_to_gates(tp).items():
                    if g in names:
                        self.program.params[names[g]].value = v

    def load_from_program(self) -> None:
        """Copy the Program's parameter values into the module."""
        from ..gru import gates_to_torch

        with torch.no_grad():
            for name, t in self.param_tensors().items():
                t.copy_(torch.as_tensor(self.program.params[name].value, dtype=t.dtype))
            for block, names in self.gru_params.items():
                gates = {g: np.asarray(self.program.params[n].value, dtype=float) for g, n in names.items()}
                for k, v in gates_to_torch(gates).items():
                    getattr(self.grus[block], k).copy_(torch.as_tensor(v))


def program_to_module(program: Program, dtype: torch.dtype = torch.float64,
                      device: Optional[torch.device | str] = None) -> ProgramModule:
    """Build the torch module of a Program (float64 by default, like MDF/PsyNeuLink numbers)."""
    return ProgramModule(program, dtype=dtype, device=device)
