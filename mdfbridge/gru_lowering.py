"""The GRU block lowering (a plug-in of lowering, registered on import): a gate-form or fused-form block written by
mdfbridge runs as one GRU op over whole sequences (its weights stay parameters at their places in the document);
`fuse_gru=False` steps the gate form. It also says which parameters of a fused-form node its metadata marks
learnable, and at which rates (`metadata.mdfbridge.gru.learning_rates`, torch.nn.GRU's parameter names)."""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence

import numpy as np

from .block_lowering import BlockPlan, FusedBlock, mdf_meta, register_block_lowering
from .errors import ShapeError
from .gru import BIAS_NAMES, GRU_ARGS, GRU_ATTRS, GRU_DEFAULTS, WEIGHT_NAMES, torch_param_of
from .gru_mdf import OUT, block_gates, find_blocks, h0_of, is_fused_form
from .program import Op, Param, TensorRef

if TYPE_CHECKING:  # pragma: no cover
    from .lowering import Lowering

log = logging.getLogger(__name__)

FUSED_TORCH_PARAM = {"W": "weight_ih_l0", "R": "weight_hh_l0", "B": "bias_ih_l0"}  # whose rate a fused W, R, B take


def gru_meta(nodes: Mapping[str, Any], roles: Mapping[str, str]) -> Dict[str, Any]:
    """The `metadata.mdfbridge.gru` of a block (read from its input node)."""
    return (mdf_meta(nodes[roles["input"]]).get("gru") or {})


def _fused_node_meta(node: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The `metadata.mdfbridge.gru` of a fused-form block's onnx::GRU node, or None for other nodes."""
    gru = mdf_meta(node).get("gru") or {}
    return gru if gru.get("role") == "gru" else None


def _emit_gru(lw: "Lowering", out: str, node: str, args: Mapping[str, Any]) -> None:
    """Append one GRU op (every argument and attribute present, defaults where `args` has none)."""
    call = {a: args.get(a, GRU_DEFAULTS.get(a)) for a in GRU_ARGS + GRU_ATTRS}
    lw.ops.append(Op(out, call, node, fn="GRU"))


class GRUBlockLowering:
    """Recognises mdfbridge's GRU blocks (`mdfbridge.gru_mdf`) and emits each as one GRU op."""

    # ------------------------------------------------------------------ the plug-in protocol
    def plan(self, lw: "Lowering") -> BlockPlan:
        """Blocks to run as one GRU op: every gate-form block (unless lowering with fuse_blocks False) and every
        fused-form block written as mdfbridge writes it; a graph with a fused-form block is a sequence program."""
        blocks = find_blocks(lw.nodes)
        sequence = any("gru" in roles for roles in blocks.values())  # a fused-form node runs whole sequences
        if not lw.fuse_blocks:
            for block, roles in blocks.items():
                if "gru" not in roles and block_gates(lw.nodes, roles) is not None:
                    self.check_gate_block(lw, block, roles)
            return BlockPlan((), sequence)
        fused = []
        for block, roles in blocks.items():
            if "gru" in roles:
                if is_fused_form(lw.nodes[roles["gru"]]):
                    fused.append(self._block(block, roles, self.emit_fused_form))
                continue
            if block_gates(lw.nodes, roles) is None:
                log.warning("GRU block '%s' does not have the gate form mdfbridge writes; lowering it node by "
                            "node (step by step)", block)
                continue
            fused.append(self._block(block, roles, self.emit_gate_form))
        return BlockPlan(tuple(fused), sequence or bool(fused))

    def learnable_parameters(self, node: Mapping[str, Any]) -> Optional[Sequence[str]]:
        """A fused-form node's W, R (and B, with bias) unless learning is off or their rate is False."""
        gru = _fused_node_meta(node)
        if gru is None or not gru.get("enable_learning", True):
            return None
        rates = gru.get("learning_rates") or {}
        return tuple(k for k, tp in FUSED_TORCH_PARAM.items() if rates.get(tp) is not False
                     and (k != "B" or gru.get("bias", True)))

    def learning_rate(self, node: Mapping[str, Any], pid: str) -> Optional[float]:
        """A fused-form node's per-parameter rate (the block's optimizer_params), or None."""
        gru = _fused_node_meta(node)
        if gru is None:
            return None
        rate = (gru.get("learning_rates") or {}).get(FUSED_TORCH_PARAM.get(pid, ""))
        return None if rate in (None, False, True) else float(rate)

    # ------------------------------------------------------------------ blocks
    @staticmethod
    def _block(block: str, roles: Mapping[str, str], emit: Any) -> FusedBlock:
        members = frozenset(nid for role, nid in roles.items() if role != "input")
        return FusedBlock(block, roles["input"], members, functools.partial(emit, block=block, roles=roles))

    def check_gate_block(self, lw: "Lowering", block: str, roles: Mapping[str, str]) -> Dict[str, np.ndarray]:
        """A gate-form block's weights as arrays, their shapes checked against the block's sizes (ShapeError)."""
        meta = gru_meta(lw.nodes, roles)
        gates = block_gates(lw.nodes, roles) or {}
        I, H = int(meta.get("input_size", -1)), int(meta.get("hidden_size", -1))
        h0 = h0_of(lw.nodes, roles)
        if h0.shape != (H,):
            raise ShapeError(f"GRU block '{block}': initial hidden state has shape {h0.shape}, expected ({H},)",
                             where=f"node '{roles['hidden']}' input port 'h'")
        out: Dict[str, np.ndarray] = {}
        for name, (value, loc) in gates.items():
            arr = lw.finite(value, lw.paths[loc[0]] + loc[1:])
            want = (I, H) if name.startswith("wts_i") else (H, H) if name.startswith("wts_h") else (H,)
            if arr.shape != want:
                raise ShapeError(f"GRU block '{block}': {name} has shape {arr.shape}, expected {want} for input "
                                 f"size {I} and hidden size {H}", where=f"node '{loc[0]}' parameter '{name}'")
            out[name] = arr
        return out

    def emit_fused_form(self, lw: "Lowering", block: str, roles: Mapping[str, str]) -> None:
        """One GRU op (ONNX weight layout) for a fused-form block: W, R, B stay parameters at their places."""
        nid = roles["gru"]
        node = lw.nodes[nid]
        meta = gru_meta(lw.nodes, roles)
        H, I = int(meta.get("hidden_size", -1)), int(meta.get("input_size", -1))
        learnable = lw.learnable_params_of(nid, node)
        attr = node["functions"]["gru"]["function"]["onnx::GRU"].get("hidden_size", H)
        if int(attr) != H:
            raise ShapeError(f"onnx::GRU attribute hidden_size {attr} but the block has hidden_size {H}",
                             where=f"node '{nid}'")
        args: Dict[str, Any] = {"X": TensorRef(lw.port_tensor[(roles["input"], OUT)]), "weight_layout": "onnx"}
        want = {"W": (1, 3 * H, I), "R": (1, 3 * H, H), "B": (1, 6 * H), "initial_h": (1, 1, H)}
        for pid, shape in want.items():
            loc = lw.paths[nid] + ("parameters", pid, "value")
            arr = lw.finite(node["parameters"][pid]["value"], loc)
            if arr.shape != shape:
                raise ShapeError(f"GRU block '{block}': {pid} has shape {arr.shape}, expected {shape} for input "
                                 f"size {I} and hidden_size {H}", where=f"node '{nid}' parameter '{pid}'")
            if pid == "initial_h":
                args["h0"] = lw.emit_const(f"{nid}.h0", arr.reshape(-1), nid)
                continue
            lw.params[f"{nid}.{pid}"] = Param(f"{nid}.{pid}", arr, location=loc, learnable=pid in learnable,
                                              learning_rate=lw.param_learning_rate(node, pid))
            args[pid] = TensorRef(f"{nid}.{pid}")
        if not meta.get("bias", True):
            args["B"] = None
        out = f"{block}.gru"
        _emit_gru(lw, out, nid, args)
        lw.port_tensor[(roles["output"], OUT)] = out

    def emit_gate_form(self, lw: "Lowering", block: str, roles: Mapping[str, str]) -> None:
        """One GRU op (per-gate weight layout) for a gate-form block: the gate weights stay parameters at their
        document places."""
        gates = block_gates(lw.nodes, roles) or {}
        meta = gru_meta(lw.nodes, roles)
        frozen = set(meta.get("frozen") or ())
        arrays = self.check_gate_block(lw, block, roles)
        args: Dict[str, Any] = {"X": TensorRef(lw.port_tensor[(roles["input"], OUT)]), "weight_layout": "gates"}
        args["h0"] = lw.emit_const(f"{roles['hidden']}.h0", h0_of(lw.nodes, roles), roles["hidden"])
        for name in WEIGHT_NAMES + BIAS_NAMES:
            if name not in gates:
                continue
            arr, loc = arrays[name], gates[name][1]
            pname = f"{loc[0]}.{name}"
            rate = (meta.get("learning_rates") or {}).get(torch_param_of(name))
            lw.params[pname] = Param(pname, arr, location=lw.paths[loc[0]] + loc[1:],
                                     learnable=name not in frozen and bool(meta.get("enable_learning", True))
                                     and rate is not False,
                                     learning_rate=None if rate in (None, False, True) else float(rate))
            args[name] = TensorRef(pname)
        out = f"{block}.gru"
        _emit_gru(lw, out, roles["reset"], args)
        lw.port_tensor[(roles["output"], OUT)] = out


GRU_BLOCKS = register_block_lowering(GRUBlockLowering())
