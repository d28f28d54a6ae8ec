"""The registry of converters, keyed by what torch calls: torch.nn module classes (fx call_module), torch.Tensor
methods such as `torch.Tensor.relu` (fx call_method), functions (fx call_function) and aten op overloads
(torch.export). Converters register themselves with `@add_converter(...)`, in the style of onnx2torch, so the
graph walk stays generic."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .builder import Builder
from .values import Call

Converter = Callable[[Builder, Call], Any]

CONVERTERS: Dict[Any, Converter] = {}


def add_converter(*targets: Any) -> Callable[[Converter], Converter]:
    """Register the decorated function as the converter of each target.

    A target is a torch.nn.Module subclass, a torch.Tensor method (`torch.Tensor.relu`), a function
    (`torch.relu`, `F.relu`, `operator.add`) or an aten op overload (`aten("relu.default")`); None (an aten op this
    torch lacks) is skipped.
    """
    def deco(fn: Converter) -> Converter:
        for t in targets:
            if t is not None:
                CONVERTERS[t] = fn
        return fn
    return deco


def aten(name: str) -> Any:
    """torch.ops.aten.<op>.<overload> by dotted name, or None when this torch lacks it."""
    op, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, op, None)
    return getattr(packet, overload or "default", None) if packet is not None else None


def _tensor_method(target: Any) -> bool:
    """Is `target` a method of torch.Tensor (what an fx call_method node calls)?"""
    name = getattr(target, "__name__", None)
    return isinstance(name, str) and getattr(torch.Tensor, name, None) is target


def _module_class(target: Any) -> bool:
    """Is `target` a torch.nn.Module subclass (what an fx call_module node calls)?"""
    return isinstance(target, type) and issubclass(target, nn.Module)


def converter_for(op: str, target: Any, module: Optional[nn.Module]) -> Tuple[Optional[Converter], str]:
    """The converter of a traced node (fx `op` kind and target, `module` for call_module), or None, and what the
    node calls in words (for the error when there is none)."""
    if op == "call_module":
        return CONVERTERS.get(type(module)), f"torch.nn module {type(module).__module__}.{type(module).__name__}"
    if op == "call_method":
        return CONVERTERS.get(getattr(torch.Tensor, str(target), None)), f"tensor method '{target}'"
    what = f"function {callable_name(target)}" if op == "call_function" else f"{op} {callable_name(target)}"
    return CONVERTERS.get(target), what


def callable_name(f: Any) -> str:
    """A readable name of a function or aten op: torch.relu, torch.nn.functional.softmax, aten.tanh.default."""
    if isinstance(f, torch._ops.OpOverload):
        return f"aten.{str(f).split('::', 1)[-1]}" if "::" in str(f) else str(f)
    raw = getattr(f, "__module__", None) or ""
    mod = {"_operator": "operator", "torch._C._nn": "torch.nn.functional",
           "torch._C._VariableFunctions": "torch"}.get(raw, raw)
    name = getattr(f, "__name__", None) or str(f)
    return f"{mod}.{name}" if mod else name


def supported_layers() -> Dict[str, List[str]]:
    """What the importer converts: torch.nn module types, functions (fx), aten ops (torch.export), tensor methods."""
    modules = [t for t in CONVERTERS if _module_class(t)]
    methods = [t for t in CONVERTERS if _tensor_method(t)]
    names = sorted({callable_name(f) for f in CONVERTERS if f not in modules and f not in methods})
    return {"modules": sorted(t.__name__ for t in modules),
            "functions": [n for n in names if not n.startswith("aten.")],
            "aten": [n for n in names if n.startswith("aten.")],
            "methods": sorted(t.__name__ for t in methods)}


def supported_summary() -> str:
    """One line listing what the importer converts (for error messages)."""
    s = supported_layers()
    return ("modules " + ", ".join(s["modules"]) + "; functions " + ", ".join(s["functions"]) + "; tensor methods "
            + ", ".join(s["methods"]))
