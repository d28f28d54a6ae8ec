"""The numpy reference interpreter over `Program`: batched over trials, multi-step for stateful graphs."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..errors import DataError
from ..executor import Env, compile_program, execute
from ..program import Program
from ..shapes import fit_unit_axes

log = logging.getLogger(__name__)

class ReferenceRunner:
    """Compiles a Program into numpy closures once, then runs batches through it."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.steps, self.batched = compile_program(program, "numpy")

    # ---------------------------------------------------------------- running
    def prepare_inputs(self, inputs: Mapping[str, Any], lead: Optional[int] = None) -> Tuple[Env, int]:
        """Check inputs against the program's input specs; returns the env with them and the batch size.

        `lead` leading axes come before each port's shape: 1 (trials), or 2 (trials, time) for sequences.
        """
        prog = self.program
        lead = lead or (2 if prog.sequence else 1)
        steps: Optional[int] = None
        unknown = set(inputs) - set(prog.inputs) - {s.port for s in prog.inputs.values()}
        if unknown:
            raise DataError(f"unknown input(s) {sorted(unknown)}; the model's inputs are {sorted(prog.inputs)}")
        env: Env = {}
        batch: Optional[int] = None
        for name, spec in prog.inputs.items():
            val = inputs.get(name, inputs.get(spec.port))
            if val is None:
                continue
            try:
                arr = np.asarray(val, dtype=float)
            except (TypeError, ValueError) as exc:
                raise DataError(f"input '{name}' is not an array of numbers: {exc}") from None
            lead_names = "trials, time steps" if lead == 2 else "trials"
            if spec.shape is not None and tuple(arr.shape[lead:]) != tuple(spec.shape):
                fitted: Optional[np.ndarray]
                if tuple(arr.shape) == tuple(spec.shape) and lead == 1:
                    fitted = arr[None]  # one trial without its trials axis
                else:  # (trials, n) for a (1, n) port, as PsyNeuLink writes inputs
                    fitted = fit_unit_axes(arr, lead, tuple(spec.shape)) if arr.ndim >= lead else None
                if fitted is None:
                    raise DataError(f"input '{name}' has shape {arr.shape}; expected ({lead_names}, "
                                    f"{', '.join(map(str, spec.shape))}) for port '{spec.node}.{spec.port}' "
                                    f"of shape {tuple(spec.shape)}")
                arr = fitted
            if arr.ndim < lead:
                raise DataError(f"input '{name}' has shape {arr.shape}; expected ({lead_names}, ...)")
            if not np.all(np.isfinite(arr)):
                raise DataError(f"input '{name}' contains NaN or infinite values")
            if batch is not None and arr.shape[0] != batch:
                raise DataError(f"input '{name}' has {arr.shape[0]} trials, other inputs have {batch}")
            if lead == 2 and steps is not None and arr.shape[1] != steps:
                raise DataError(f"input '{name}' has {arr.shape[1]} time steps, other inputs have {steps}")
            batch = arr.shape[0]
            steps = arr.shape[1] if lead == 2 else None
            env[f"{spec.node}.{spec.port}"] = arr
        batch = batch or 1
        head = (batch,) if lead == 1 else (batch, steps or 1)
        for name, spec in prog.inputs.items():
            key = f"{spec.node}.{spec.port}"
            if key not in env:
                if spec.default is not None:
                    base = spec.default
                elif spec.shape is not None:
                    base = np.zeros(spec.shape)
                else:
                    raise DataError(f"no value for input '{name}' and its port has no default_value or shape")
                env[key] = np.broadcast_to(base, head + base.shape).copy()
        return env, batch

    def run_sequence(self, inputs: Mapping[str, Any], params: Optional[Mapping[str, np.ndarray]] = None
                     ) -> Dict[str, Any]:
        """Inputs (trials, time, ...): a sequence program runs once; a step-level one steps through time
        (one step per time point, state carried), as modeci-mdf's engine would. Outputs (trials, time, ...)."""
        prog = self.program
        if prog.sequence:
            return self.run(inputs, params=params)
        env, batch = self.prepare_inputs(inputs, lead=2)
        keys = {f"{s.node}.{s.port}": k for k, s in prog.inputs.items()}
        T = next(iter(env.values())).shape[1] if env else 1
        traj = self.run({keys[k]: v[:, 0] for k, v in env.items()}, steps=T, params=params, record=True,
                        per_step={keys[k]: v for k, v in env.items()})["__trajectory__"]
        return {k: np.swapaxes(v, 0, 1) for k, v in traj.items()}

    def run(self, inputs: Mapping[str, Any], *, steps: int = 1, dt: float = 1.0,
            params: Optional[Mapping[str, np.ndarray]] = None, record: bool = False,
            keep_env: bool = False, per_step: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, Any]:
        """Run `steps` steps on a batch; returns output name -> (trials, ...) array.

        With `record`, also returns `"__trajectory__"`: output name -> (steps, trials, ...). `per_step` gives
        inputs (trials, steps, ...) fed one time point per step.
        """
        prog = self.program
        env, batch = self.prepare_inputs(inputs)
        feeds = {f"{prog.inputs[k].node}.{prog.inputs[k].port}": v for k, v in (per_step or {}).items()}
        env.update(params if params is not None else prog.param_values())
        for name, st in prog.states.items():
            env[name] = np.broadcast_to(st.initial, (batch,) + st.initial.shape).astype(float)
        if prog.schedule is not None and prog.schedule.static_order(steps) is not None:
            from .scheduled import run_scheduled

            scheduled = run_scheduled(self, env, batch, steps, dt, feeds, record)
            if keep_env:
                scheduled["__env__"] = env
            return scheduled
        traj: Dict[str, List[np.ndarray]] = {k: [] for k in prog.outputs}
        for step in range(int(steps)):
            # modeci-mdf's convention: the first evaluation initialises time-derivative state, later ones
            # advance it by dt
            env["dt"] = np.asarray(0.0 if step == 0 else float(dt))
            for key, v in feeds.items():
                env[key] = v[:, step]
            execute(self.steps, env)
            if record:
                for k, t in prog.outputs.items():
                    traj[k].append(self._batched_value(t, env, batch))
            if prog.states:
                env.update({name: self._batched_value(st.update, env, batch)
                            for name, st in prog.states.items()})
        out: Dict[str, Any] = {k: self._batched_value(t, env, batch) for k, t in prog.outputs.items()}
        if record:
            out["__trajectory__"] = {k: np.stack(v) for k, v in traj.items()}
        if keep_env:
            out["__env__"] = env
        return out

    def _batched_value(self, tensor: str, env: Env, batch: int) -> np.ndarray:
        v = np.asarray(env[tensor], dtype=float)
        if tensor in self.batched:
            return v
        head = (batch,) if not self.program.sequence else (batch, next(
            (np.shape(env[k])[1] for k in self.batched if k in env and np.ndim(env[k]) > 1), 1))
        return np.broadcast_to(v, head + v.shape).copy()



def runner_for(program: Program) -> ReferenceRunner:
    """The ReferenceRunner of this Program, compiled once and kept on the Program."""
    runner = program.__dict__.get("_reference_runner")
    if runner is None:
        runner = program.__dict__["_reference_runner"] = ReferenceRunner(program)
    return runner


def run_program(program: Program, inputs: Mapping[str, Any], *, steps: int = 1, dt: float = 1.0,
                params: Optional[Mapping[str, np.ndarray]] = None, record: bool = False,
                sequence: bool = False) -> Dict[str, Any]:
    """Run a Program with the numpy reference interpreter (see ReferenceRunner.run / run_sequence)."""
    if sequence:
        return runner_for(program).run_sequence(inputs, params=params)
    return runner_for(program).run(inputs, steps=steps, dt=dt, params=params, record=record)
