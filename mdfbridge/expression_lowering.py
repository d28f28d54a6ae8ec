"""Lower a parsed MDF expression (a tree of registry op applications, see mdfbridge.expressions) into Program
call ops: names bind to the node's tensors or static values, constant subtrees are folded with the ops' numpy
implementations, and what the op set cannot express as a Program op is refused with UnsupportedError naming
the node and the construct. No backend sees an expression."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping

import numpy as np

from .errors import ExpressionError, MdfBridgeError, UnsupportedError
from .expressions import Call, Const, Expression, IfExp, Seq, SliceNode, Var
from .ops import REGISTRY
from .program import Op, TensorRef

Value = Any  # a TensorRef, a list of them, or a static value


def has_tensor(v: Any) -> bool:
    """True when v is a TensorRef or a list/tuple holding one."""
    if isinstance(v, TensorRef):
        return True
    return isinstance(v, (list, tuple)) and any(has_tensor(x) for x in v)


class ExpressionLowering:
    """Emits the ops of one expression; `emit(op)` appends an op, `const(name, value)` makes a constant tensor."""

    def __init__(self, expr: Expression, out: str, node: str, where: str, resolve: Callable[[str], Value],
                 emit: Callable[[Op], None], const: Callable[[str, Any], TensorRef]) -> None:
        self.expr, self.out, self.node, self.where = expr, out, node, where
        self.resolve, self.emit, self.const = resolve, emit, const
        self.count = 0

    def fail(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{what} in expression '{self.expr.source}' cannot be lowered to the op set",
                                where=self.where)

    def lower(self) -> Value:
        """The expression's value: a tensor (the last op's output is called `out`) or a folded constant."""
        return self.value(self.expr.tree, root=True)

    def tensor_name(self, root: bool) -> str:
        if root:
            return self.out
        self.count += 1
        return f"{self.out}~{self.count}"

    def value(self, node: Any, root: bool = False) -> Value:
        t = type(node)
        if t is Const:
            return node.value
        if t is Var:
            if node.default is not None:
                try:
                    return self.resolve(node.name)
                except MdfBridgeError:
                    return node.default
            return self.resolve(node.name)
        if t is Seq:
            return node.kind(self.value(v) for v in node.items)
        if t is SliceNode:
            parts = [None if p is None else self.value(p) for p in node]
            if any(has_tensor(p) for p in parts):
                raise self.fail("a slice bound computed from tensors")
            return slice(*parts)
        if t is IfExp:
            test = self.value(node.test)
            if not has_tensor(test):
                if np.ndim(test) == 0:  # a constant condition picks its branch now
                    return self.value(node.body if bool(test) else node.orelse, root)
            return self.call(REGISTRY["Where"], {"condition": test, "X": self.value(node.body),
                                                 "Y": self.value(node.orelse)}, root)
        if t is Call:
            return self.call(node.op, {k: self.value(v) for k, v in node.args.items()}, root)
        raise self.fail(f"construct {type(node).__name__}")  # pragma: no cover

    def call(self, op: Any, args: Dict[str, Value], root: bool) -> Value:
        for a in op.attrs:
            if has_tensor(args.get(a)):
                raise self.fail(f"argument '{a}' of {op.name} computed from tensors (it must be a constant)")
        if not any(has_tensor(v) for v in args.values()):
            return self.fold(op, args)
        out = self.tensor_name(root)
        call_args = {k: self.tensor_list(v, f"{out}.{k}") if isinstance(v, (list, tuple)) and has_tensor(v) else v
                     for k, v in args.items()}
        self.emit(Op(out, call_args, self.node, fn=op.name))
        return TensorRef(out)

    def tensor_list(self, items: Any, name: str) -> List[TensorRef]:
        """A sequence argument holding tensors: its constant items become constant tensors."""
        out: List[TensorRef] = []
        for i, x in enumerate(items):
            if has_tensor(x) and not isinstance(x, TensorRef):
                raise self.fail("a nested sequence of tensors")
            out.append(x if isinstance(x, TensorRef) else self.const(f"{name}.{i}", x))
        return out

    def fold(self, op: Any, args: Mapping[str, Value]) -> Any:
        """Evaluate an op on constant arguments now."""
        try:
            with np.errstate(all="ignore"):
                return op.numpy(**args)
        except ExpressionError as exc:
            raise ExpressionError(f"{exc} in expression '{self.expr.source}'", where=self.where) from None
        except (ArithmeticError, TypeError, ValueError, IndexError) as exc:
            raise ExpressionError(f"cannot evaluate '{self.expr.source}': {type(exc).__name__}: {exc}",
                                  where=self.where) from exc
