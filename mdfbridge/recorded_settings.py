"""The learning settings a document records for itself, as LearnConfig fields (`mdfbridge train` uses them unless
the command line overrides them).

PsyNeuLink's AutodiffComposition export (graph metadata `type: AutodiffComposition`) records `learning_rate` in the
graph's `parameters`, and `loss_spec` ('Loss.MSE'), `minibatch_size` and `synch_projection_matrices_with_torch` in
the graph's metadata; per projection `learnable` and `learning_rate` in the `<proj>_dummy_node` metadata (read by
the lowering). It does not record the optimizer, the number of epochs or the training data. A Composition that is
not an AutodiffComposition records PsyNeuLink's default learning_rate (0.05), which is not a training setting:
nothing is taken from it.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

from .errors import UnsupportedError
from .losses import get_loss


def learning_settings(graph: Mapping[str, Any]) -> Dict[str, Any]:
    """LearnConfig field -> value the graph dict records (empty when it records none)."""
    meta = graph.get("metadata") or {}
    if not isinstance(meta, Mapping) or meta.get("type") != "AutodiffComposition":
        return {}
    out: Dict[str, Any] = {}
    rate = (graph.get("parameters") or {}).get("learning_rate")
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        out["learning_rate"] = float(rate)
    loss = meta.get("loss_spec")
    if isinstance(loss, str):
        try:
            out["loss_spec"] = get_loss(loss.split(".")[-1]).name  # 'Loss.MSE' -> 'mse'
        except UnsupportedError:
            pass  # a loss mdfbridge does not have: training then needs --loss
    size = meta.get("minibatch_size")
    if isinstance(size, int) and not isinstance(size, bool) and size >= 1:
        out["minibatch_size"] = size
    synch = meta.get("synch_projection_matrices_with_torch")
    if isinstance(synch, str):
        out["synch_projection_matrices"] = synch.split(".")[-1].lower()
    return out
