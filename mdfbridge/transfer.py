"""Transfer functions of the composition API (PsyNeuLink names and parameters) and how each is written
to MDF: as a standard MDF function where one exists, else as a `value` expression modeci-mdf evaluates."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Type

from .ops import get_op


class TransferFunction:
    """Base: a named elementwise (or softmax) function with parameters.

    params: the function's parameters by keyword, each a number (made a float), from the class's `defaults`
    (e.g. Logistic(gain=2.0)); those not given keep their default values. An unknown name raises TypeError
    naming the parameters the function takes.
    """

    name: str = ""
    defaults: Dict[str, float] = {}

    def __init__(self, **params: float) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no parameter(s) {sorted(unknown)}; "
                            f"it takes {sorted(self.defaults)}")
        self.params: Dict[str, float] = {**self.defaults, **{k: float(v) for k, v in params.items()}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.params == other.params  # type: ignore[attr-defined]

    def mdf_function(self, x: str) -> Dict[str, Any]:
        """Keyword arguments of `modeci_mdf.mdf.Function` computing this function of expression `x`.

        x: the MDF expression (an input port or another function's id) the function applies to."""
        raise NotImplementedError


class _Standard(TransferFunction):
    """Written as an MDF standard function whose arguments are the node's parameters."""

    standard: str = ""

    def mdf_function(self, x: str) -> Dict[str, Any]:
        """`function: standard, args: {variable0: x, param: param, ...}` (the form modeci-mdf's engine runs).

        x: the MDF expression the function applies to."""
        args: Dict[str, Any] = {"variable0": x, **{k: k for k in self.params}}
        return {"function": self.standard, "args": args}


class Linear(_Standard):
    """slope * x + intercept."""

    name, standard, defaults = "Linear", "linear", {"slope": 1.0, "intercept": 0.0}


class Logistic(TransferFunction):
    """PsyNeuLink's Logistic: scale / (1 + exp(-gain * (x + bias - x_0))) + offset (offset outside the sigmoid, as
    PsyNeuLink 0.21's Logistic._function computes it; defaults gain 1, bias 0, x_0 0, scale 1, offset 0).

    In MDF: with x_0 = 0, scale = 1, offset = 0 it is MDF's standard `logistic` (the same function there); otherwise
    a `value` expression of the node's parameters, which modeci-mdf's engine evaluates to the same numbers."""

    name, defaults = "Logistic", {"gain": 1.0, "bias": 0.0, "x_0": 0.0, "scale": 1.0, "offset": 0.0}

    def mdf_function(self, x: str) -> Dict[str, Any]:
        """MDF's standard `logistic` of `x` when x_0, scale and offset are at their defaults, else the `value`
        expression of PsyNeuLink's formula.

        x: the MDF expression the function applies to."""
        p = self.params
        if p["x_0"] == 0.0 and p["scale"] == 1.0 and p["offset"] == 0.0:
            return {"function": "logistic", "args": {"variable0": x, "gain": "gain", "bias": "bias", "offset": 0.0}}
        return {"value": "scale / (1.0 + numpy.exp(-gain * ((variable0) + bias - x_0))) + offset",
                "args": {"variable0": x}, "metadata": {"mdfbridge": {"transfer": self.name}}}


class Exponential(_Standard):
    """scale * exp(rate * x + bias) + offset."""

    name, standard = "Exponential", "exponential"
    defaults = {"rate": 1.0, "bias": 0.0, "scale": 1.0, "offset": 0.0}


class Tanh(TransferFunction):
    """scale * tanh(gain * (x + bias) + offset)."""

    name, defaults = "Tanh", {"gain": 1.0, "bias": 0.0, "offset": 0.0, "scale": 1.0}

    def mdf_function(self, x: str) -> Dict[str, Any]:
        """MDF `tanh` with the affine map in its argument.

        x: the MDF expression the function applies to."""
        return {"function": "tanh", "args": {"variable0": f"gain * ({x} + bias) + offset", "scale": "scale"}}


class _ValueForm(TransferFunction):
    """Written as a `value` expression (modeci-mdf evaluates it) tagged with the function's name."""

    def mdf_function(self, x: str) -> Dict[str, Any]:
        """`value` = the registry's expression of `variable0`, with `variable0` bound to `x`.

        x: the MDF expression the function applies to."""
        op = get_op(self.name)
        assert op is not None and op.value_form is not None, self.name  # the transfer ops have value forms
        return {"value": op.value_form("variable0"), "args": {"variable0": x},
                "metadata": {"mdfbridge": {"transfer": self.name}}}


class ReLU(_ValueForm):
    """gain * (x - bias) for x > bias, leak * gain * (x - bias) otherwise."""

    name, defaults = "ReLU", {"gain": 1.0, "bias": 0.0, "leak": 0.0}


class SoftMax(_ValueForm):
    """exp(gain * x) / sum(exp(gain * x)) over the mechanism's values."""

    name, defaults = "SoftMax", {"gain": 1.0}


TRANSFER_FUNCTIONS: Dict[str, Type[TransferFunction]] = {
    c.name: c for c in (Linear, Logistic, Exponential, Tanh, ReLU, SoftMax)}


def transfer_from_metadata(name: str, params: Mapping[str, Any]) -> TransferFunction:
    """Rebuild a transfer function from its name and parameter values (as written to MDF).

    name: a TRANSFER_FUNCTIONS key ('Linear', 'Logistic', 'Exponential', 'Tanh', 'ReLU', 'SoftMax'); an unknown
    one raises KeyError. params: parameter name -> number; names the function does not take (other node
    parameters) are ignored, and those missing keep their defaults."""
    cls = TRANSFER_FUNCTIONS.get(name)
    if cls is None:
        raise KeyError(name)
    return cls(**{k: float(v) for k, v in params.items() if k in cls.defaults})
