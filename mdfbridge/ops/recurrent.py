"""Recurrent layers: the GRU op (its math and weight layouts live in mdfbridge.gru), the RNN and LSTM ops (theirs in
mdfbridge.rnn; `onnx::RNN`, `onnx::LSTM` are aliases with ONNX's names and layouts; ONNX export as one ONNX RNN /
LSTM node, exporters/onnx_rnn.py; the torch implementation is torch's fused kernel on the parameter tensors, so the
weights train where they are).

`GRU` has two attributes that say how its arguments are laid out (see the record's description):
`weight_layout` ('gates': PsyNeuLink per-gate weights, as the gate form of a GRU block holds them; 'onnx': W, R, B
as ONNX's GRU and the fused form hold them) and `axes` ('trial': X (T, I) per trial, as a GRU block's input node
sends it; 'onnx': ONNX's X (T, N, I) and Y (T, 1, N, H)). `onnx::GRU` is an alias: ONNX's names (initial_h for
h0), the 'onnx' layouts, and ONNX's default linear_before_reset (0; the GRU op's own default is torch's 1).
Its hooks: `validate` (lowering), `onnx_export` (exporters/onnx_gru.py: one ONNX GRU node), `torch_module`
(importers/torch_gru.py: one torch.nn.GRU per per-gate call, weights converted once).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..gru import (
    GRU_ARGS,
    GRU_ATTRS,
    GRU_DEFAULTS,
    GRU_DESCRIPTION,
    GRU_OUTPUTS,
    gru_op_numpy,
    gru_op_torch,
    validate_gru,
)
from ..lazy_function import LazyFunction
from ..rnn import ONNX_WEIGHTS, TORCH_WEIGHTS, Cell, Nonlinearity, op_numpy, op_torch, register_cell
from ..rnn import shape as recurrent_shape
from ..rnn import validate as validate_recurrent
from . import from_onnx
from .base import Alias, OnnxImport, OpDef, only_x, register

ONNX_ACTIVATIONS = ("Sigmoid", "Tanh")  # ONNX GRU's `activations` (f, g) the op computes: ONNX's default, torch's
GRU_CELL = register_cell(Cell(  # torch's gate rows r, z, n; ONNX's z, r, h
    "GRU", gates=3, torch_to_onnx=(1, 0, 2), onnx_to_torch=(1, 0, 2), outputs=GRU_OUTPUTS, has_cell=False,
    nonlinearities={}, onnx_activations=(ONNX_ACTIVATIONS,)))


def _gru_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    """Y per trial: (T, H) for X (T, I) ('trial' axes), (T, D, N, H) for X (T, N, I) ('onnx' axes, D directions;
    layout 1: (N, T, D, H)); Y_h without the time axis."""
    layout = a.get("weight_layout")
    hidden = a["R"][-1] if layout == "onnx" else a["weight_hh"][-1] if layout == "torch" else a["wts_hr"][0]
    return recurrent_shape(GRU_CELL, a, hidden)


def _gru_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """GRU on a batch: X batched ('onnx' axes: X only); with 'trial' axes the initial state h0 may carry the batch
    axis too (an initial state given as a module input)."""
    if attrs.get("axes", "trial") == "onnx":
        return only_x(batched_args, attrs)
    return attrs if "X" in batched_args and batched_args <= {"X", "h0"} else None


register(OpDef("GRU", GRU_ARGS, gru_op_numpy, gru_op_torch, defaults=GRU_DEFAULTS, attrs=GRU_ATTRS,
               batch_rule=_gru_batched, description=GRU_DESCRIPTION, shape=_gru_shape,
               aliases=(Alias("onnx::GRU", {"initial_h": "h0"},
                              {"weight_layout": "onnx", "axes": "onnx", "linear_before_reset": 0}),),
               validate=validate_gru,
               onnx_import=(OnnxImport("GRU", 7, None, from_onnx.recurrent("onnx::GRU", ("Y", "Y_h")), (1, 2, 3)),),
               onnx_export=LazyFunction("mdfbridge.exporters.onnx_gru", "export_gru"),
               torch_module=LazyFunction("mdfbridge.importers.torch_gru", "gru_torch_module")))


# ------------------------------------------------------------------------------------------ RNN, LSTM

ONNX_RNN_ATTRS = ("hidden_size", "direction", "layout", "activations", "clip", "activation_alpha",
                  "activation_beta")


RNN_CELL = register_cell(Cell(
    "RNN", gates=1, torch_to_onnx=(0,), onnx_to_torch=(0,), outputs=("Y", "Y_h"), has_cell=False,
    nonlinearities={"tanh": Nonlinearity("tanh", np.tanh, "rnn_tanh", "Tanh"),
                    "relu": Nonlinearity("relu", lambda v: np.maximum(v, 0.0), "rnn_relu", "Relu")},
    onnx_activations=(("Tanh",), ("Relu",))))
LSTM_CELL = register_cell(Cell(  # torch's gate rows i, f, g, o; ONNX's i, o, f, c
    "LSTM", gates=4, torch_to_onnx=(0, 3, 1, 2), onnx_to_torch=(0, 2, 3, 1), outputs=("Y", "Y_h", "Y_c"),
    has_cell=True, nonlinearities={}, onnx_activations=(("Sigmoid", "Tanh", "Tanh"),)))


def _recurrent_args(kind: str) -> Tuple[str, ...]:
    state = ("h0", "c0") if kind == "LSTM" else ("h0",)
    return ("X",) + state + TORCH_WEIGHTS + ONNX_WEIGHTS + ("sequence_lens",) + (("P", "weight_hr") if kind == "LSTM"
                                                                                else ())


def _recurrent_attrs(kind: str) -> Tuple[str, ...]:
    return (("weight_layout", "axes", "output") + (("nonlinearity",) if kind == "RNN" else ()) + ONNX_RNN_ATTRS
            + (("input_forget",) if kind == "LSTM" else ()))


def _recurrent_defaults(kind: str) -> Dict[str, Any]:
    d: Dict[str, Any] = {k: None for k in _recurrent_args(kind)[1:]}
    d.update({k: None for k in ONNX_RNN_ATTRS}, weight_layout="torch", axes="trial", output="Y", direction="forward",
             layout=0)
    if kind == "RNN":
        d["nonlinearity"] = "tanh"
    else:
        d["input_forget"] = 0
    return d


def state_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """RNN / LSTM: fine on a batch when only X and the initial states carry the batch axis."""
    return attrs if batched_args <= {"X", "h0", "c0"} else None


def rnn_numpy(X: Any, **kw: Any) -> Any:
    """The RNN op in numpy (mdfbridge.rnn)."""
    return op_numpy(RNN_CELL, X, **kw)


def rnn_torch(X: Any, **kw: Any) -> Any:
    """The RNN op in torch (mdfbridge.rnn)."""
    return op_torch(RNN_CELL, X, **kw)


def lstm_numpy(X: Any, **kw: Any) -> Any:
    """The LSTM op in numpy (mdfbridge.rnn)."""
    return op_numpy(LSTM_CELL, X, **kw)


def lstm_torch(X: Any, **kw: Any) -> Any:
    """The LSTM op in torch (mdfbridge.rnn)."""
    return op_torch(LSTM_CELL, X, **kw)


_DESCRIPTION = (
    "{kind} (torch.nn.{kind}'s equations{extra}, one layer) over a whole sequence. weight_layout 'torch': "
    "weight_ih ({g}H, I), weight_hh ({g}H, H), optional bias_ih, bias_hh ({g}H) as torch holds them; 'onnx': W "
    "(D, {g}H, I), R (D, {g}H, H), optional B (D, {g2}H){order}, D directions. axes 'trial': X (T, I) per trial "
    "from h0{c} (H,) (zeros when absent), forward; 'onnx' (the onnx::{kind} alias): X (T, N, I) from "
    "initial_h{ic} (D, N, H), direction forward, reverse or bidirectional (D = 2). output picks the value: Y (the "
    "output sequence: (T, H), or (T, D, N, H)), Y_h (the last hidden state{yc}). ONNX attributes: no clip{acts}; "
    "sequence_lens{p} are not supported.")

register(OpDef("RNN", _recurrent_args("RNN"), rnn_numpy, rnn_torch, defaults=_recurrent_defaults("RNN"),
               attrs=_recurrent_attrs("RNN"), batch_rule=state_batched,
               description=_DESCRIPTION.format(kind="RNN", extra=", nonlinearity 'tanh' or 'relu'", g=1, g2=2,
                                               order="", c="", ic="", yc="",
                                               acts=", activations Tanh or Relu", p=""),
               shape=lambda a: recurrent_shape(RNN_CELL, a),
               aliases=(Alias("onnx::RNN", {"initial_h": "h0"}, {"weight_layout": "onnx", "axes": "onnx"}),),
               validate=lambda node, args, params: validate_recurrent(RNN_CELL, node, args, params),
               onnx_import=(OnnxImport("RNN", 7, None, from_onnx.recurrent("onnx::RNN", RNN_CELL.outputs), (1, 2, 3)),),
               onnx_export=LazyFunction("mdfbridge.exporters.onnx_rnn", "export_rnn")))

register(OpDef("LSTM", _recurrent_args("LSTM"), lstm_numpy, lstm_torch, defaults=_recurrent_defaults("LSTM"),
               attrs=_recurrent_attrs("LSTM"), batch_rule=state_batched,
               description=_DESCRIPTION.format(kind="LSTM", extra=", gate rows i, f, g, o; with torch's projection "
                                               "weight_hr (P, H) (proj_size P) h = (o * tanh(c)) @ weight_hr.T, "
                                               "weight_hh (4H, P), Y and Y_h of size P, torch layout only",
                                               g=4, g2=8,
                                               order=" in ONNX's gate order i, o, f, c", c=", c0",
                                               ic=", initial_c", yc="; Y_c the last cell state",
                                               acts=", default activations, input_forget 0",
                                               p=" and peepholes P"),
               shape=lambda a: recurrent_shape(LSTM_CELL, a),
               aliases=(Alias("onnx::LSTM", {"initial_h": "h0", "initial_c": "c0"},
                              {"weight_layout": "onnx", "axes": "onnx"}),),
               validate=lambda node, args, params: validate_recurrent(LSTM_CELL, node, args, params),
               onnx_import=(OnnxImport("LSTM", 7, None, from_onnx.recurrent("onnx::LSTM", LSTM_CELL.outputs),
                                       (1, 2, 3)),),
               onnx_export=LazyFunction("mdfbridge.exporters.onnx_rnn", "export_lstm")))
