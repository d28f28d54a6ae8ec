"""Lower a parsed MDF expression (a tree of registry op applications, see mdfbridge.expressions) into Program
call ops: names bind to the node's tensors or static values, constant subtrees are folded with the ops' numpy
implementations, and what the op set cannot express as a Program op is refused with UnsupportedError naming
the node and the construct. No backend sees an expression."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from .errors import ExpressionError, MdfBridgeError, UnsupportedError
from .expressions import Call, Const, Expression, IfExp, Seq, SliceNode, Var
from .ops import REGISTRY
from .ops.budget import Budget, ExpressionLimitError, check_float_range, quoted
from .program import Op, TensorRef

Value = Any  # a TensorRef, a list of them, or a static value


def has_tensor(v: Any) -> bool:
    """True when v is a TensorRef or a list/tuple holding one."""
    if isinstance(v, TensorRef):
        return True
    return isinstance(v, (list, tuple)) and any(has_tensor(x) for x in v)


class ExpressionLowering:
    """Emits the ops of one expression; `emit(op)` appends an op, `const(name, value)` makes a constant tensor.

    budget: what folding constants may hold (mdfbridge.ops.budget; default None: a budget of its own). The
    lowering of a document shares one, so the constants all its expressions fold stay within max_elements; every
    fold is checked against it before it runs."""

    def __init__(self, expr: Expression, out: str, node: str, where: str, resolve: Callable[[str], Value],
                 emit: Callable[[Op], None], const: Callable[[str, Any], TensorRef],
                 budget: Optional[Budget] = None) -> None:
        self.expr, self.out, self.node, self.where = expr, out, node, where
        self.resolve, self.emit, self.const = resolve, emit, const
        self.budget = budget if budget is not None else Budget()
        self.what = f"expression {quoted(expr.source)}"
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
        held = self.budget.held
        if t is IfExp:
            test = self.value(node.test)
            if not has_tensor(test):
                if np.ndim(test) == 0:  # a constant condition picks its branch now
                    self.budget.release(self.budget.held - held)
                    return self.value(node.body if bool(test) else node.orelse, root)
            return self.call(REGISTRY["Where"], {"condition": test, "X": self.value(node.body),
                                                 "Y": self.value(node.orelse)}, root, held)
        if t is Call:
            return self.call(node.op, {k: self.value(v) for k, v in node.args.items()}, root, held)
        raise self.fail(f"construct {type(node).__name__}")  # pragma: no cover

    def call(self, op: Any, args: Dict[str, Value], root: bool, held: Optional[int] = None) -> Value:
        """An op on the lowered arguments: folded now when none is a tensor (charged to the budget first, the
        folded arguments it consumes released after; held: the budget's count before the arguments were lowered,
        default None: release nothing), else emitted."""
        tensors = {k for k, v in args.items() if has_tensor(v)}
        for a in op.attrs:
            if a in tensors:
                raise self.fail(f"argument '{a}' of {op.name} computed from tensors (it must be a constant)")
        if not tensors:
            n = self.budget.charge(op, args, self.what, self.where)
            value = self.fold(op, args)
            if held is not None:
                self.budget.release(self.budget.held - held - n)
            return value
        static = {k: v for k, v in args.items() if k not in tensors}
        if static:
            check_float_range(op, static, self.what, self.where, arrays=True)
        out = self.tensor_name(root)
        call_args = {k: self.tensor_list(v, f"{out}.{k}") if k in tensors and isinstance(v, (list, tuple)) else v
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
        except ExpressionLimitError as exc:
            raise ExpressionLimitError(f"{self.what}: {exc}", where=self.where) from None
        except ExpressionError as exc:
            raise ExpressionError(f"{exc} in expression '{self.expr.source}'", where=self.where) from None
        except (ArithmeticError, TypeError, ValueError, IndexError) as exc:
            raise ExpressionError(f"cannot evaluate '{self.expr.source}': {type(exc).__name__}: {exc}",
                                  where=self.where) from exc
