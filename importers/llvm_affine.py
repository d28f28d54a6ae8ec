"""Affine forms: which chains of elementwise ops the LLVM backend fuses into one `affine` kernel.

A value is affine in the tensors it reads when it is `sum(coef * tensor) + const` with constant coefficients
(sums of afferents, an edge's `weight * x` with a static weight, Tanh's `gain * (x + bias) + offset`).
`affine_form` finds out by walking the tree with `AffineAlgebra`: the records' own scalar forms
(`OpDef.llvm`, or their `formula`) run on affine forms instead of IR, and anything beyond addition,
subtraction, negation, and multiplication or division by a constant is not affine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Union

from .llvm_scalar import Binder, ScalarAlgebra, walk


class NotAffine(Exception):
    """Raised by AffineAlgebra for anything that is not affine."""


@dataclass(frozen=True)
class Affine:
    """`sum(coefs[t] * t) + const` over tensors t."""

    coefs: Mapping[str, float]
    const: float = 0.0

    @staticmethod
    def of(tensor: str) -> "Affine":
        """The tensor itself."""
        return Affine({tensor: 1.0})

    def scaled(self, f: float) -> "Affine":
        """f * self."""
        return Affine({t: c * f for t, c in self.coefs.items()}, self.const * f)

    def is_identity(self) -> Optional[str]:
        """The tensor this form is (coefficient 1, constant 0), else None."""
        if len(self.coefs) == 1 and self.const == 0.0:
            (t, c), = self.coefs.items()
            return t if c == 1.0 else None
        return None


Form = Union[float, Affine]


def _form(v: Any) -> Form:
    return float(v) if isinstance(v, (bool, float, int)) else v


class AffineAlgebra(ScalarAlgebra):
    """The scalar primitives on affine forms (floats are constants); the others raise NotAffine."""

    def unsupported(self, what: str) -> Exception:
        return NotAffine(what)

    def add(self, a: Any, b: Any, sign: float = 1.0) -> Form:
        a, b = _form(a), _form(b)
        if isinstance(a, float) and isinstance(b, float):
            return a + sign * b
        fa = a if isinstance(a, Affine) else Affine({}, a)
        fb = b if isinstance(b, Affine) else Affine({}, b)
        coefs: Dict[str, float] = dict(fa.coefs)
        for t, c in fb.coefs.items():
            coefs[t] = coefs.get(t, 0.0) + sign * c
        return Affine(coefs, fa.const + sign * fb.const)

    def sub(self, a: Any, b: Any) -> Form:
        return self.add(a, b, -1.0)

    def mul(self, a: Any, b: Any) -> Form:
        a, b = _form(a), _form(b)
        if isinstance(a, Affine) and isinstance(b, Affine):
            raise NotAffine("product of two tensors")
        if isinstance(a, float) and isinstance(b, float):
            return a * b
        return a.scaled(b) if isinstance(a, Affine) else b.scaled(a)

    def div(self, a: Any, b: Any) -> Form:
        a, b = _form(a), _form(b)
        if isinstance(b, Affine) or b == 0.0:
            raise NotAffine("division by a tensor or by zero")
        return a / b if isinstance(a, float) else a.scaled(1.0 / b)

    def neg(self, a: Any) -> Form:
        a = _form(a)
        return -a if isinstance(a, float) else a.scaled(-1.0)


def affine_form(tree: Any, bind: Binder) -> Optional[Affine]:
    """The affine form of `tree` (variables bound to forms or floats by `bind`), or None when it is not affine
    in at least one tensor with finite coefficients."""
    try:
        form = walk(AffineAlgebra(), tree, bind)
    except NotAffine:
        return None
    if not isinstance(form, Affine) or not form.coefs:
        return None
    if not all(math.isfinite(c) for c in form.coefs.values()) or not math.isfinite(form.const):
        return None
    return form
