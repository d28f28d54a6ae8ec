"""Lowering of GRU blocks: a gate-form or fused-form block written by mdfbridge runs as one GRU op over whole
sequences (its weights stay parameters at their places in the document); `fuse_gru=False` steps the gate form."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping

import numpy as np

from . import gru as _gru_ops  # noqa: F401 - registers the GRU ops
from .errors import ShapeError
from .program import Op, Param, TensorRef

log = logging.getLogger(__name__)


def gru_meta(nodes: Mapping[str, Any], roles: Mapping[str, str]) -> Dict[str, Any]:
    """The `metadata.mdfbridge.gru` of a block (read from its input node)."""
    return (mdf_meta(nodes[roles["input"]]).get("gru") or {})



def mdf_meta(obj: Mapping[str, Any]) -> Dict[str, Any]:
    """`metadata.mdfbridge` of a document entry."""
    return (obj.get("metadata") or {}).get("mdfbridge") or {}


class GRUBlockLowering:
    """The GRU-block part of `Lowering` (a mixin: it uses the lowering's nodes, params, ops and port tensors)."""

    def fused_gru_blocks(self) -> Dict[str, Dict[str, str]]:
        """Gate-form GRU blocks to run as one fused GRU op (all, unless lowering with fuse_gru=False)."""
        from .gru_mdf import block_gates, find_blocks, is_fused_form

        blocks = find_blocks(self.nodes)
        if any("gru" in roles for roles in blocks.values()):
            self.sequence = True  # fused form: its onnx::GRU node lowers as written
        if not self.fuse_gru:
            for block, roles in blocks.items():
                if "gru" not in roles and block_gates(self.nodes, roles) is not None:
                    self.check_gru_block(block, roles)
            return {}
        out = {}
        for block, roles in blocks.items():
            if "gru" in roles:
                if is_fused_form(self.nodes[roles["gru"]]):
                    out[block] = roles
                continue
            if block_gates(self.nodes, roles) is None:
                log.warning("GRU block '%s' does not have the gate form mdfbridge writes; lowering it node by "
                            "node (step by step)", block)
                continue
            out[block] = roles
        if out:
            self.sequence = True
        return out

    def check_gru_block(self, block: str, roles: Mapping[str, str]) -> Dict[str, np.ndarray]:
        """A gate-form block's weights as arrays, their shapes checked against the block's sizes (ShapeError)."""
        from .gru_mdf import block_gates, h0_of

        meta = gru_meta(self.nodes, roles)
        gates = block_gates(self.nodes, roles) or {}
        I, H = int(meta.get("input_size", -1)), int(meta.get("hidden_size", -1))
        h0 = h0_of(self.nodes, roles)
        if h0.shape != (H,):
            raise ShapeError(f"GRU block '{block}': initial hidden state has shape {h0.shape}, expected ({H},)",
                             where=f"node '{roles['hidden']}' input port 'h'")
        out: Dict[str, np.ndarray] = {}
        for name, (value, loc) in gates.items():
            arr = self.finite(value, ("graphs", self.gid, "nodes") + loc)
            want = (I, H) if name.startswith("wts_i") else (H, H) if name.startswith("wts_h") else (H,)
            if arr.shape != want:
                raise ShapeError(f"GRU block '{block}': {name} has shape {arr.shape}, expected {want} for input "
                                 f"size {I} and hidden size {H}", where=f"node '{loc[0]}' parameter '{name}'")
            out[name] = arr
        return out

    def emit_fused_gru_block(self, block: str, roles: Mapping[str, str]) -> None:
        """One GRU op for a fused-form block (as mdfbridge writes it): W, R, B stay parameters at their places."""
        from .gru_mdf import OUT

        nid = roles["gru"]
        node = self.nodes[nid]
        meta = gru_meta(self.nodes, roles)
        H, I = int(meta.get("hidden_size", -1)), int(meta.get("input_size", -1))
        learnable = self.learnable_params_of(nid, node)
        attr = node["functions"]["gru"]["function"]["onnx::GRU"].get("hidden_size", H)
        if int(attr) != H:
            raise ShapeError(f"onnx::GRU attribute hidden_size {attr} but the block has hidden_size {H}",
                             where=f"node '{nid}'")
        args: Dict[str, Any] = {"X": TensorRef(self.port_tensor[(roles["input"], OUT)])}
        want = {"W": (1, 3 * H, I), "R": (1, 3 * H, H), "B": (1, 6 * H), "initial_h": (1, 1, H)}
        for pid, shape in want.items():
            loc = ("graphs", self.gid, "nodes", nid, "parameters", pid, "value")
            arr = self.finite(node["parameters"][pid]["value"], loc)
            if arr.shape != shape:
                raise ShapeError(f"GRU block '{block}': {pid} has shape {arr.shape}, expected {shape} for input "
                                 f"size {I} and hidden_size {H}", where=f"node '{nid}' parameter '{pid}'")
            if pid == "initial_h":
                args["h0"] = self.emit_const(f"{nid}.h0", arr.reshape(-1), nid)
                continue
            self.params[f"{nid}.{pid}"] = Param(f"{nid}.{pid}", arr, location=loc, learnable=pid in learnable,
                                                learning_rate=self.param_learning_rate(node, pid))
            args[pid] = TensorRef(f"{nid}.{pid}")
        if not meta.get("bias", True):
            args["B"] = None
        out = f"{block}.gru"
        self.ops.append(Op("call", out, args, nid, fn="GRU_ONNX"))
        self.port_tensor[(roles["output"], OUT)] = out

    def emit_gru_block(self, block: str, roles: Mapping[str, str]) -> None:
        """One fused GRU op for a gate-form block: per-gate weights stay parameters at their document places."""
        from .gru import BIAS_NAMES, WEIGHT_NAMES, torch_param_of
        from .gru_mdf import OUT, block_gates, h0_of

        gates = block_gates(self.nodes, roles)
        meta = gru_meta(self.nodes, roles)
        frozen = set(meta.get("frozen") or ())
        arrays = self.check_gru_block(block, roles)
        args: Dict[str, Any] = {"X": TensorRef(self.port_tensor[(roles["input"], OUT)])}
        h0 = h0_of(self.nodes, roles)
        args["h0"] = self.emit_const(f"{roles['hidden']}.h0", h0, roles["hidden"])
        for name in WEIGHT_NAMES + BIAS_NAMES:
            if name not in gates:
                args[name] = None
                continue
            arr, loc = arrays[name], gates[name][1]
            pname = f"{loc[0]}.{name}"
            rate = (meta.get("learning_rates") or {}).get(torch_param_of(name))
            self.params[pname] = Param(pname, arr, location=("graphs", self.gid, "nodes") + loc,
                                       learnable=name not in frozen and bool(meta.get("enable_learning", True))
                                       and rate is not False,
                                       learning_rate=None if rate in (None, False, True) else float(rate))
            args[name] = TensorRef(pname)
        out = f"{block}.gru"
        self.ops.append(Op("call", out, args, roles["reset"], fn="GRU"))
        self.port_tensor[(roles["output"], OUT)] = out
