"""MDF scheduling conditions, executed by graph-scheduler (the library modeci-mdf's engine and PsyNeuLink use).

A graph's `conditions` hold node conditions (when a node may run) and termination conditions per time scale
(when a pass, trial, ... ends), each an MDF condition dict `{"type": <graph_scheduler.condition class>, "kwargs":
{...}}` (v0.1 files write "args"). `read_schedule` checks them once while lowering and keeps them on the Program
as a `Schedule`; `Schedule.scheduler` builds a fresh `graph_scheduler.Scheduler` for each run (it is stateful).
The numpy reference runs any schedule (importers/reference.py); backends that compile one fixed order per step
(torch, LLVM, ONNX) call `require_static` and run only schedules that reduce to the program's topological order.
"""
from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from .errors import SchemaError, UnsupportedError

# PsyNeuLink's time-scale names -> graph-scheduler's
_TIME_SCALE_ALIASES = {"TIME_STEP": "CONSIDERATION_SET_EXECUTION", "TRIAL": "ENVIRONMENT_STATE_UPDATE",
                       "RUN": "ENVIRONMENT_SEQUENCE"}
_TIME_SCALE_TEXT = re.compile(r"^(?:TimeScale\.)?([A-Za-z_]+)$")
# condition types whose arguments are Python callables: nothing in a file can supply one
_NEEDS_CALLABLE = {"While", "WhileNot", "Condition", "NWhen"}
# conditions that read model values while running: the schedule may differ from one trial of a batch to another
VALUE_DEPENDENT = {"Threshold"}

MAX_TIME_STEPS = 1_000_000  # per trial: a schedule whose termination is never met stops with an error here
Getter = Callable[[str, str], Any]  # (node, parameter or port) -> its current value


def time_scale(text: Any, where: str) -> Any:
    """The graph_scheduler.TimeScale a document names ('TimeScale.TRIAL', 'environment_state_update', 'PASS');
    SchemaError naming `where` for anything else."""
    import graph_scheduler

    m = _TIME_SCALE_TEXT.match(str(text).strip()) if isinstance(text, str) else None
    name = m.group(1).upper() if m else ""
    name = _TIME_SCALE_ALIASES.get(name, name)
    try:
        return graph_scheduler.TimeScale[name]
    except KeyError:
        names = [t.name for t in graph_scheduler.TimeScale] + list(_TIME_SCALE_ALIASES)
        raise SchemaError(f"unknown time scale {text!r} (expected one of {', '.join(names)})",
                          json_path=where) from None


@dataclass
class Schedule:
    """A graph's scheduling conditions as written (MDF condition dicts), checked by `read_schedule`."""

    graph: str
    dependencies: Dict[str, Set[str]]  # node -> the nodes it receives edges from (graph-scheduler's graph)
    conditions: Dict[str, Any] = field(default_factory=dict)  # node -> condition dict
    termination: Dict[str, Any] = field(default_factory=dict)  # time scale as written -> condition dict
    order: List[str] = field(default_factory=list)  # the program's node order (topological)
    delayed: List[Tuple[str, str]] = field(default_factory=list)  # (sender, receiver) of edges closing a cycle

    @property
    def types(self) -> Set[str]:
        """Every condition type used (nested ones included)."""
        found: Set[str] = set()

        def walk(c: Any) -> None:
            if isinstance(c, dict) and "type" in c:
                found.add(str(c["type"]))
                for v in _kwargs(c).values():
                    for x in (v if isinstance(v, list) else [v]):
                        walk(x)
        for c in list(self.conditions.values()) + list(self.termination.values()):
            walk(c)
        return found

    @property
    def value_dependent(self) -> bool:
        """True when a condition reads model values (Threshold): each trial of a batch is then scheduled alone."""
        return bool(self.types & VALUE_DEPENDENT)

    def describe(self) -> str:
        """The conditions in one line, as written (for messages)."""
        parts = [f"{n}: {_text(c)}" for n, c in self.conditions.items()]
        parts += [f"termination {s}: {_text(c)}" for s, c in self.termination.items()]
        return "; ".join(parts)

    def scheduler(self, getter: Optional[Getter] = None) -> Any:
        """A fresh graph_scheduler.Scheduler over node ids; `getter(node, name)` serves Threshold conditions (the
        value a node's parameter or port holds now)."""
        import graph_scheduler

        build = _Builder(self, getter)
        conditions = {n: build.condition(c, f"conditions.node_specific.{n}") for n, c in self.conditions.items()}
        termination = {time_scale(s, f"conditions.termination.{s}"): build.condition(c, f"conditions.termination.{s}")
                       for s, c in self.termination.items()}
        return graph_scheduler.Scheduler(graph={n: set(d) for n, d in self.dependencies.items()},
                                         conditions=conditions, termination_conds=termination)

    def trials(self, steps: int, getter: Optional[Getter] = None) -> List[List[List[str]]]:
        """The node sets each time step runs, per trial, for `steps` trials of a fresh scheduler (only for
        schedules that do not read values: `getter` then serves nothing)."""
        sched = self.scheduler(getter)
        return [[sorted(ts) for ts in self.time_steps(sched, t)] for t in range(int(steps))]

    def time_steps(self, scheduler: Any, trial: int) -> Iterator[Set[str]]:
        """The node sets of one trial of `scheduler` (`Scheduler.run()`); UnsupportedError after MAX_TIME_STEPS
        (graph-scheduler would run a trial whose termination is never met forever)."""
        for count, time_step in enumerate(scheduler.run()):
            if count >= MAX_TIME_STEPS:
                raise UnsupportedError(f"trial {trial} did not end after {MAX_TIME_STEPS} time steps; the termination "
                                       f"conditions ({self.describe()}) are never met", where=f"graph '{self.graph}'")
            yield time_step

    def static_order(self, steps: int) -> Optional[str]:
        """None when `steps` trials run each node once per trial in an order the program's topological order
        computes identically (every node after its senders, before the senders of the edges that close cycles);
        else the reason why not. Cached per number of steps."""
        steps = max(1, int(steps))
        cache = self.__dict__.setdefault("_static", {})
        if steps not in cache:
            cache[steps] = self._static_order(steps)
        return cache[steps]

    def _static_order(self, steps: int) -> Optional[str]:
        if self.value_dependent:
            return "its conditions read model values while running (Threshold)"
        for t, trial in enumerate(self.trials(steps)):
            ran = [n for ts in trial for n in ts]
            position = {n: i for i, ts in enumerate(trial) for n in ts}
            if sorted(ran) != sorted(self.dependencies):
                counts = {n: ran.count(n) for n in self.dependencies if ran.count(n) != 1}
                runs = ", ".join(f"{n}: {k}" for n, k in counts.items())
                return f"trial {t} runs nodes other than once each ({runs})"
            for receiver, senders in self.dependencies.items():
                for sender in senders:
                    delayed = (sender, receiver) in self.delayed
                    if not delayed and position[sender] >= position[receiver]:
                        return f"trial {t} runs '{receiver}' before or with its sender '{sender}'"
                    if delayed and position[sender] < position[receiver]:
                        return f"trial {t} runs '{sender}' before '{receiver}' reads its previous value"
        return None


def _is_condition(typ: Any) -> bool:
    import graph_scheduler

    return inspect.isclass(typ) and issubclass(typ, graph_scheduler.condition.Condition)


def _kwargs(cond: Mapping[str, Any]) -> Dict[str, Any]:
    args = cond.get("kwargs")
    if args is None:
        args = cond.get("args")  # MDF v0.1
    return dict(args or {})


def _text(cond: Any) -> str:
    """A condition dict as the call it makes: And(AfterNCalls(C, 2), JustRan(A))."""
    if isinstance(cond, list):
        return ", ".join(map(_text, cond))
    if not isinstance(cond, dict):
        return str(cond)
    args = [(_text(v) if k in ("dependency", "dependencies") else f"{k}={_text(v)}") for k, v in _kwargs(cond).items()]
    return f"{cond.get('type')}({', '.join(args)})"


class _Builder:
    """MDF condition dicts -> graph_scheduler Conditions (as modeci-mdf's engine reads them: node ids become
    nodes, nested dicts conditions, time-scale strings TimeScale members; 'dependencies' is the key MDF prefers
    for a condition's `dependency`)."""

    def __init__(self, schedule: Schedule, getter: Optional[Getter]) -> None:
        self.nodes, self.getter, self.graph = set(schedule.dependencies), getter, schedule.graph

    def condition(self, cond: Any, where: str) -> Any:
        import graph_scheduler

        path = f"graphs.{self.graph}.{where}"
        if not isinstance(cond, dict) or not isinstance(cond.get("type"), str):
            raise SchemaError("a condition is {\"type\": ..., \"kwargs\": {...}}, got " + repr(cond)[:60],
                              json_path=path)
        ctype = cond["type"]
        typ = getattr(graph_scheduler.condition, ctype, None)
        if ctype.startswith("WhenFinished"):
            raise UnsupportedError(f"condition '{ctype}' asks whether a node is finished, which PsyNeuLink mechanisms "
                                   "report and MDF nodes do not", where=path)
        if ctype in _NEEDS_CALLABLE:
            raise UnsupportedError(f"condition '{ctype}' needs a Python function, which a file cannot hold; "
                                   "use a condition graph-scheduler defines by its arguments", where=path)
        if not _is_condition(typ):
            known = [n for n in dir(graph_scheduler.condition) if _is_condition(getattr(graph_scheduler.condition, n))]
            close = difflib.get_close_matches(ctype, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UnsupportedError(f"unknown condition type '{ctype}' ({hint}graph-scheduler has Always, "
                                   "EveryNCalls, AfterNCalls, AtPass, All, Any, Not, Threshold, ...)", where=path)
        assert typ is not None
        sig = inspect.signature(typ)
        args: Dict[str, Any] = {}
        for k, v in _kwargs(cond).items():
            args[k] = self.argument(v, f"{where}.kwargs.{k}", k)
        if "dependencies" in args and "dependencies" not in sig.parameters and "dependency" in sig.parameters:
            args["dependency"] = args.pop("dependencies")
        if "custom_parameter_getter" in sig.parameters:  # Threshold: values come from the running program
            args.update(self.threshold_hooks(args, path))
        positional: List[Any] = []
        try:
            sig.bind(**args)
        except TypeError:  # a variadic parameter written as a keyword (AllHaveRun's "dependencies": [...])
            variadic = [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.VAR_POSITIONAL]
            name = next((n for n in variadic + ["dependencies"] if n in args), None) if variadic else None
            if name is not None:
                v = args.pop(name)
                positional = list(v) if isinstance(v, (list, tuple)) else [v]
        try:
            sig.bind(*positional, **args)
            return typ(*positional, **args)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"condition '{ctype}': {exc} (it takes {sig})", json_path=path) from None

    def argument(self, v: Any, where: str, key: str) -> Any:
        if isinstance(v, dict) and "type" in v:
            return self.condition(v, where)
        if isinstance(v, list):
            return [self.argument(x, f"{where}.{i}", key) for i, x in enumerate(v)]
        if isinstance(v, str):
            if v in self.nodes:
                return v
            if key == "time_scale" or v.startswith("TimeScale."):
                return time_scale(v, f"graphs.{self.graph}.{where}")
            if key in ("dependency", "dependencies"):
                raise SchemaError(f"condition names node '{v}', which is not in the graph "
                                  f"(nodes: {', '.join(sorted(self.nodes))})", json_path=f"graphs.{self.graph}.{where}")
        return v

    def threshold_hooks(self, args: Dict[str, Any], where: str) -> Dict[str, Any]:
        node, name = args.get("dependency"), args.get("parameter")
        if node not in self.nodes or not isinstance(name, str):
            raise SchemaError("a Threshold condition names a node ('dependency') and a parameter of it",
                              json_path=where)
        getter = self.getter

        def get(dependency: Any, parameter: Any) -> Any:
            if getter is None:
                raise UnsupportedError("a Threshold condition reads model values; only the numpy reference runs it",
                                       where=where)
            return getter(dependency, parameter)
        return {"custom_parameter_getter": get, "custom_parameter_validator": lambda d, p: True}


def read_schedule(conds: Any, gid: str, nodes: Mapping[str, Any], edges: Mapping[str, Any],
                  order: List[str], delayed: Set[str]) -> Optional[Schedule]:
    """The graph's conditions as a checked Schedule, or None when they change nothing (none, or only Always).

    conds: the graph's `conditions` dict (or None); gid: the graph's id; nodes/edges: its node and edge dicts;
    order: the program's node order; delayed: ids of edges that close a cycle. Raises SchemaError/UnsupportedError
    naming the condition's place for unknown types, nodes or arguments.
    """
    conds = conds or {}
    if not isinstance(conds, dict):
        raise SchemaError("conditions are {\"node_specific\": {...}, \"termination\": {...}}",
                          json_path=f"graphs.{gid}.conditions")
    node_specific = dict(conds.get("node_specific") or {})
    termination = dict(conds.get("termination") or {})
    for n in node_specific:
        if n not in nodes:
            raise SchemaError(f"a condition is given for node '{n}', which is not in the graph",
                              json_path=f"graphs.{gid}.conditions.node_specific")
    if not termination and all(isinstance(c, dict) and c.get("type") == "Always" for c in node_specific.values()):
        return None  # (an Always beside other conditions stays: a node without one runs as graph-scheduler's
        # default, once per call of each of its senders, not always)
    deps: Dict[str, Set[str]] = {n: set() for n in nodes}
    for e in edges.values():
        deps[e["receiver"]].add(e["sender"])
    sched = Schedule(gid, deps, node_specific, termination, list(order),
                     [(edges[e]["sender"], edges[e]["receiver"]) for e in sorted(delayed)])
    sched.scheduler(lambda node, name: 0.0)  # builds every condition once: errors surface here, with their place
    return sched


def require_static(schedule: Optional[Schedule], steps: int, backend: str) -> None:
    """UnsupportedError naming the conditions when `steps` trials of `schedule` are not the program's fixed
    topological order, pointing to the numpy reference (which runs any schedule)."""
    if schedule is None:
        return
    reason = schedule.static_order(steps)
    if reason is not None:
        raise UnsupportedError(f"the scheduling conditions ({schedule.describe()}) are not one fixed order per step: "
                               f"{reason}; backend '{backend}' runs only such schedules; run on backend 'numpy' (the "
                               "reference runs any schedule)", where=f"graph '{schedule.graph}'")
