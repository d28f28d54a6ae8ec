"""The numpy reference under scheduling conditions: nodes run when graph-scheduler says, as in modeci-mdf's engine.

Each `steps` is one trial (`Scheduler.run()`, i.e. one modeci-mdf `EvaluableGraph.evaluate()`), the scheduler's
clock carried from trial to trial. Running a node runs its ops (its input ports read the senders' latest values;
a sender that has not run yet gives zeros), then commits its state: stateful parameters take their new values and
edges out of it that close a cycle carry its output. Every run in the first trial leaves time-derivative state at
its initial value (dt 0), later runs advance it by dt, as modeci-mdf's first `evaluate()` without a time increment
does. Conditions that read values (Threshold) can schedule each trial of a batch differently: those trials run one
at a time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping

import numpy as np

from ..errors import UnsupportedError
from ..executor import Env, Step, execute

if TYPE_CHECKING:  # pragma: no cover
    from ..scheduling import Schedule
    from .reference import ReferenceRunner


def run_scheduled(runner: "ReferenceRunner", env: Env, batch: int, steps: int, dt: float,
                  feeds: Mapping[str, np.ndarray], record: bool) -> Dict[str, Any]:
    """Run `steps` trials of the runner's Program under its schedule from `env` (inputs, parameters and initial
    state set); returns output name -> (trials, ...) and, with `record`, "__trajectory__" per trial."""
    prog = runner.program
    schedule = prog.schedule
    assert schedule is not None
    if not schedule.value_dependent or batch == 1:
        return _Scheduled(runner, env, batch).run(steps, dt, feeds, record)
    rows = []
    for b in range(batch):  # each trial of the batch has its own schedule
        row_env = {k: (v[b:b + 1] if k in runner.batched else v) for k, v in env.items()}
        row_feeds = {k: v[b:b + 1] for k, v in feeds.items()}
        rows.append(_Scheduled(runner, row_env, 1).run(steps, dt, row_feeds, record))
    out: Dict[str, Any] = {k: np.concatenate([r[k] for r in rows]) for k in prog.outputs}
    if record:
        out["__trajectory__"] = {k: np.concatenate([r["__trajectory__"][k] for r in rows], axis=1)
                                 for k in prog.outputs}
    return out


class _Scheduled:
    """One scheduled run over one env."""

    def __init__(self, runner: "ReferenceRunner", env: Env, batch: int) -> None:
        prog = runner.program
        assert prog.schedule is not None
        self.runner, self.prog, self.env, self.batch = runner, prog, env, batch
        self.schedule: Schedule = prog.schedule
        self.by_node: Dict[str, List[Step]] = {}
        producer: Dict[str, str] = {}
        for op, f in runner.steps:
            self.by_node.setdefault(op.node, []).append((op, f))
            producer[op.out] = op.node
        strangers = set(self.by_node) - set(self.schedule.dependencies)
        if strangers:  # a fused block's ops: one op for several nodes cannot run node by node
            raise UnsupportedError(f"ops of {sorted(strangers)} are not graph nodes the schedule can run one by one "
                                   "(a fused block); lower with fuse_gru=False", where=f"graph '{self.schedule.graph}'")
        self.commits: Dict[str, List[tuple]] = {n: [] for n in self.schedule.dependencies}
        for name, st in prog.states.items():
            owner = producer.get(st.update, st.node) if st.kind == "delay" else st.node
            self.commits.setdefault(owner, []).append((name, st.update))
        # what a node reads from a sender that has not run yet: zeros (the engine's input ports start at zeros);
        # a node that never runs reports zeros too
        for op, _ in runner.steps:
            if op.out not in env:
                lead = (batch,) if op.out in runner.batched else ()
                env[op.out] = np.zeros(lead + tuple(prog.shapes.get(op.out, ())))
        self.ports: Mapping[str, str] = prog.metadata.get("ports", {})

    def value(self, node: str, name: str) -> Any:
        """What a node's parameter or port holds now (for Threshold): one trial's value."""
        key = f"{node}.{name}"
        tensor = self.ports.get(key, key)
        if tensor in self.env:
            v = np.asarray(self.env[tensor])
            return v[0] if tensor in self.runner.batched else v  # (state tensors are batched)
        raise UnsupportedError(f"a Threshold condition reads '{key}', which is not a parameter or port value the "
                               "program computes", where=f"graph '{self.schedule.graph}'")

    def run(self, steps: int, dt: float, feeds: Mapping[str, np.ndarray], record: bool) -> Dict[str, Any]:
        prog, env = self.prog, self.env
        sched = self.schedule.scheduler(self.value)
        traj: Dict[str, List[np.ndarray]] = {k: [] for k in prog.outputs}
        for step in range(int(steps)):
            for key, v in feeds.items():
                env[key] = v[:, step]
            env["dt"] = np.asarray(0.0 if step == 0 else float(dt))
            for time_step in self.schedule.time_steps(sched, step):
                for node in sorted(time_step, key=self.schedule.order.index):
                    execute(self.by_node.get(node, []), env)
                    env.update({name: env[update] for name, update in self.commits.get(node, [])})
            if record:
                for k, t in prog.outputs.items():
                    traj[k].append(self.runner._batched_value(t, env, self.batch))
        out: Dict[str, Any] = {k: self.runner._batched_value(t, env, self.batch) for k, t in prog.outputs.items()}
        if record:
            out["__trajectory__"] = {k: np.stack(v) for k, v in traj.items()}
        return out
