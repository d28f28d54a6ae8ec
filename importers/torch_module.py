"""`Program` -> `torch.nn.Module`: one `nn.Parameter` per learnable parameter (named after its projection),
buffers for fixed ones; forward runs a whole minibatch at once.

An op whose record has a `torch_module` hook may run as a torch module of its own (`TorchModuleBinding`): the
module is registered under `<collection>[<key>]`, holds the program parameters the binding names (converted once),
and reads/writes them through the binding's mapping when weights go back to (or come from) the Program."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, cast

import numpy as np
import torch
from torch import nn

from ..executor import compile_program, execute
from ..ops import TorchModuleBinding, get_op
from ..program import Op, Program
from ..scheduling import require_static

log = logging.getLogger(__name__)


class ProgramModule(nn.Module):
    """A torch module computing a Program; `forward(inputs)` maps input names to (batch, ...) tensors.

    program: the lowered Program (its schedule must be static: one pass per step); its parameter table is read
    once here and kept as `self.program` (write_to_program / load_from_program move values between them). The
    module starts in eval() mode; in train() mode BatchNormalization ops normalize by their batch's statistics and
    update their running ones (as torch's nn.BatchNorm).
    dtype: the torch float dtype of every parameter, buffer and default input (default torch.float64; strings
    are not taken here: mdfbridge.dtypes.torch_dtype converts them); device: where the tensors live, a
    torch.device or a string such as 'cuda' (default None: CPU). A dynamic schedule raises UnsupportedError.
    """

    def __init__(self, program: Program, dtype: torch.dtype = torch.float64,
                 device: Optional[torch.device | str] = None) -> None:
        super().__init__()
        require_static(program.schedule, 1, "torch")
        self.program = program
        self.dtype = dtype
        self.keys: Dict[str, str] = {}  # program param name -> attribute / state_dict key
        self.bindings: Dict[str, TorchModuleBinding] = {}  # op output -> the op's own torch module
        for op in program.ops:
            binding = _binding_of(op, program, dtype, device)
            if binding is not None:
                self._add_binding(op, binding)
        consumed = {n for b in self.bindings.values() for n in b.params}
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
                    # read by learn() to build optimizer parameter groups (an attribute of ours on the Parameter)
                    param.learning_rate = p.learning_rate  # type: ignore[attr-defined]
                self.register_parameter(key, param)
            else:  # fixed projection matrices are saved with the weights; other constants are not
                self.register_buffer(key, value.clone(), persistent=p.name.endswith(".matrix"))
        self.steps, self.batched = compile_program(program, "torch")
        self.steps = [(op, self.bindings[op.out].forward if op.out in self.bindings else f) for op, f in self.steps]
        self._input_keys = [(name, s.port, f"{s.node}.{s.port}") for name, s in program.inputs.items()]
        self.to(device)
        self.eval()  # runs normalize by running statistics; learn() (TorchTrainer) switches to train() and back

    def _add_binding(self, op: Op, binding: TorchModuleBinding) -> None:
        """Register an op's own module under `<collection>[<key>]` (a ModuleDict per collection)."""
        # (cast: torch types _modules as Module | None; the collections are the ModuleDicts added here)
        collection = cast(Optional[nn.ModuleDict], self._modules.get(binding.collection))
        if collection is None:
            collection = nn.ModuleDict()
            self.add_module(binding.collection, collection)
        collection[binding.key] = binding.module
        self.bindings[op.out] = binding

    def param_tensors(self) -> Dict[str, torch.Tensor]:
        """Program param name -> its parameter/buffer tensor."""
        params, buffers = self._parameters, self._buffers
        # (cast: torch types _parameters and _buffers values as optional, for entries registered as None; the
        # program's are tensors)
        return {name: cast(torch.Tensor, params[key] if key in params else buffers[key])
                for name, key in self.keys.items()}

    def forward(self, inputs: Mapping[str, torch.Tensor], steps: int = 1, dt: float = 1.0,
                per_step: Optional[Mapping[str, torch.Tensor]] = None,
                trajectory: Optional[Dict[str, List[torch.Tensor]]] = None) -> Dict[str, torch.Tensor]:
        """Outputs (name -> (batch, ...)) after running some time on a batch of inputs (name -> (batch, ...)).

        inputs: input name (or port id) -> tensor of the module's dtype and device; an input left out takes its
        default value (else zeros) for the whole batch. steps: time steps to run (default 1; more needs a static
        schedule); dt: the time step from the second step on (default 1.0; the first step runs with dt = 0).
        per_step: inputs (name -> (batch, steps, ...)) fed one time point per step, state carried, as the numpy
        reference's `run_sequence` (default None: none). trajectory: a dict filled with each output's value after
        every step, output name -> list of tensors (default None: not recorded)."""
        env, batch = self.initial_env(inputs)
        if steps > 1:
            require_static(self.program.schedule, steps, "torch")
        feeds = self.step_feeds(per_step) if per_step else []
        for step in range(steps):
            out = self.step(env, batch, 0.0 if step == 0 else float(dt), [(key, v[:, step]) for key, v in feeds])
            if trajectory is not None:
                for k, v in out.items():
                    trajectory.setdefault(k, []).append(v)
        return out if steps else self.step_outputs(env, batch)

    def initial_env(self, inputs: Mapping[str, torch.Tensor]) -> "tuple[Dict[str, Any], int]":
        """(the environment before the first step, the batch size): parameters, inputs (name or port id ->
        (batch, ...) tensor; one left out takes its default value, else zeros) and every state at its initial
        value."""
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
        return env, batch

    def step_feeds(self, per_step: Mapping[str, torch.Tensor]) -> "List[tuple[str, torch.Tensor]]":
        """(environment key, (batch, steps, ...) tensor) of each input in `per_step` (input name or port id ->
        tensor), for `step`'s feeds (one time point each)."""
        return [(key, per_step[name] if name in per_step else per_step[port]) for name, port, key in self._input_keys
                if name in per_step or port in per_step]

    def step(self, env: Dict[str, Any], batch: int, dt: float,
             feeds: "Sequence[tuple[str, torch.Tensor]]" = (), steps: Optional[List[Any]] = None
             ) -> Dict[str, torch.Tensor]:
        """One time step in place on `env` (from `initial_env`; batch: its batch size): the inputs that `feeds`
        gives, (key, (batch, ...) tensor) pairs (default (): none), set; every op run with `dt` (modeci-mdf's first
        step runs with dt 0); then each state replaced by its update. Returns the step's outputs (name -> (batch,
        ...)), read before the states advance. steps: the compiled (op, function) pairs to run (default None: the
        module's own, `self.steps`; e-prop passes them with some functions wrapped)."""
        env["dt"] = dt
        for key, v in feeds:
            env[key] = v
        execute(self.steps if steps is None else steps, env)
        out = self.step_outputs(env, batch)
        if self.program.states:
            env.update({name: env[st.update] for name, st in self.program.states.items()})
        return out

    def step_outputs(self, env: Mapping[str, Any], batch: int) -> Dict[str, torch.Tensor]:
        """Output name -> (batch, ...) tensor as `env` holds it now."""
        return {k: env[t] if t in self.batched else self._broadcast(env[t], batch)
                for k, t in self.program.outputs.items()}

    def _broadcast(self, v: Any, batch: int) -> torch.Tensor:
        v = torch.as_tensor(v, dtype=self.dtype)
        return v.expand((batch,) + tuple(v.shape))

    def write_to_program(self) -> None:
        """Copy the module's current parameter values into the Program's parameter table."""
        with torch.no_grad():
            for name, t in self.param_tensors().items():
                self.program.params[name].value = t.detach().cpu().numpy().astype(np.float64).copy()
            for binding in self.bindings.values():
                for name, value in binding.to_program().items():
                    self.program.params[name].value = value

    def load_from_program(self) -> None:
        """Copy the Program's parameter values into the module."""
        with torch.no_grad():
            for name, t in self.param_tensors().items():
                t.copy_(torch.as_tensor(self.program.params[name].value, dtype=t.dtype))
            for binding in self.bindings.values():
                binding.from_program({n: self.program.params[n].value for n in binding.params})


def _binding_of(op: Op, program: Program, dtype: torch.dtype, device: Any) -> Optional[TorchModuleBinding]:
    """The op's own torch module when its record's `torch_module` hook gives one, else None."""
    opdef = get_op(op.fn)
    if opdef is None or opdef.torch_module is None:
        return None
    return opdef.torch_module(op, program.params, dtype, device)


def program_to_module(program: Program, dtype: torch.dtype = torch.float64,
                      device: Optional[torch.device | str] = None) -> ProgramModule:
    """Build the torch module of a Program (float64 by default, like MDF/PsyNeuLink numbers).

    program: the lowered Program; dtype: a torch float dtype (default torch.float64); device: a torch device or
    its name (default None: CPU). Returns the ProgramModule (see there for what it raises)."""
    return ProgramModule(program, dtype=dtype, device=device)


class TorchModel(nn.Module):
    """A Program as an ordinary torch module: `forward(*tensors)` takes one (batch, ...) tensor per input, in the
    order of `input_names`, and returns the output tensor (a tuple, in the order of `output_names`, when there are
    several). A single mapping {input name: tensor} is accepted too. Parameters are the Program's learnable ones
    (`parameters()` works with any torch optimizer); `steps`/`dt` (default 1, 1.0) are the time steps each call
    runs and their size. Traceable by `torch.onnx.export` and `torch.jit.trace`. It starts in eval() mode;
    train() makes BatchNormalization ops normalize by batch statistics and update their running ones.

    program: the lowered Program (trained values go back to it with write_to_program); dtype: a torch float dtype
    (default torch.float64; `mdfbridge.to_torch` also takes 'float32' / numpy dtypes); device: a torch device or
    its name, e.g. 'cuda' (default None: CPU). Inputs must be tensors of that dtype and device."""

    def __init__(self, program: Program, dtype: torch.dtype = torch.float64,
                 device: Optional[torch.device | str] = None, steps: int = 1, dt: float = 1.0) -> None:
        super().__init__()
        self.program_module = ProgramModule(program, dtype=dtype, device=device)
        self.input_names = list(program.inputs)
        self.output_names = list(program.outputs)
        self.steps, self.dt = int(steps), float(dt)
        self.eval()  # as ProgramModule: train() makes BatchNormalization use (and update) batch statistics

    def forward(self, *tensors: Any) -> Any:
        """The outputs for one (batch, ...) tensor per input (or one {input name: tensor} mapping).

        tensors: one tensor per input in `input_names` order, or a single mapping input name -> tensor (inputs
        it leaves out take their defaults). A wrong number of tensors raises TypeError. Returns the output
        tensor, or a tuple in `output_names` order when there are several."""
        if len(tensors) == 1 and isinstance(tensors[0], Mapping):
            inputs = dict(tensors[0])
        else:
            if len(tensors) != len(self.input_names):
                raise TypeError(f"forward takes {len(self.input_names)} tensor(s), one per input "
                                f"({', '.join(self.input_names)}); got {len(tensors)}")
            inputs = dict(zip(self.input_names, tensors))
        out = self.program_module(inputs, steps=self.steps, dt=self.dt)
        values = tuple(out[k] for k in self.output_names)
        return values[0] if len(values) == 1 else values

    def write_to_program(self) -> None:
        """Copy the trained values back into the Program (then `mdfbridge.write_back` writes them to MDF)."""
        self.program_module.write_to_program()

    @property
    def program(self) -> Program:
        """The Program holding the module's current (trained) values: `write_to_program()` is run first."""
        self.write_to_program()
        return self.program_module.program
