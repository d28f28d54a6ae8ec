"""`LazyFunction`: a function named by its module and attribute, imported on first use.

The loss and optimizer records (mdfbridge/losses.py, mdfbridge/optimizers.py) point at torch functions and LLVM
emitters this way, so that `import mdfbridge` imports neither torch nor llvmlite.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Optional


class LazyFunction:
    """`module.attribute`, imported the first time it is called or resolved (then kept)."""

    __slots__ = ("module", "attribute", "_target")

    def __init__(self, module: str, attribute: str) -> None:
        """module: an absolute module name ('torch.nn.functional'); attribute: the function's name in it."""
        self.module, self.attribute = module, attribute
        self._target: Optional[Callable[..., Any]] = None

    def resolve(self) -> Callable[..., Any]:
        """The function itself (imports its module the first time)."""
        if self._target is None:
            self._target = getattr(importlib.import_module(self.module), self.attribute)
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyFunction({self.module}.{self.attribute})"


def resolved(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function behind `fn` (a LazyFunction's target, or `fn` itself): call it in loops without the indirection."""
    return fn.resolve() if isinstance(fn, LazyFunction) else fn
