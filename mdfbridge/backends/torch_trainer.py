"""The torch backend's trainer: minibatch SGD/Adam over a ProgramModule with autograd (AutodiffComposition semantics).

Per minibatch: forward over the minibatch's rows, the loss summed over the output nodes with targets, backward,
one optimizer step; the minibatch's loss and outputs (taken before its update) are kept. Per epoch: the epoch loss
(mean of its minibatch losses) and early stopping. The trained values reach the Program per
`synch_projection_matrices` and at the end.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import UnsupportedError
from ..lazy_function import resolved
from ..learning import EarlyStopping, LearnConfig, LearnResult, TrainingData
from ..losses import get_loss
from ..optimizers import get_optimizer

log = logging.getLogger(__name__)

MinibatchOutputs = Tuple[Any, Dict[str, torch.Tensor]]  # (rows: a slice or an index tensor, output name -> values)


def make_optimizer(module: torch.nn.Module, config: LearnConfig) -> Any:
    """The optimizer of config.optimizer_type over the module's trainable parameters; parameters with their own
    `learning_rate` (a GRU block's optimizer_params) get a parameter group each."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise UnsupportedError("the model has no learnable parameters")
    rates = [getattr(p, "learning_rate", None) for p in params]
    groups = [{"params": [p for p, r in zip(params, rates) if r is None]}] + [
        {"params": [p], "lr": r} for p, r in zip(params, rates) if r is not None]
    return get_optimizer(config.optimizer_type).torch([g for g in groups if g["params"]], lr=config.learning_rate,
                                                      weight_decay=config.weight_decay)


class TorchTrainer:
    """One training run of a ProgramModule on prepared data."""

    def __init__(self, module: Any, data: TrainingData, config: LearnConfig, *,
                 callback: Optional[Callable[[int, int, float], None]] = None,
                 on_synch: Optional[Callable[[], None]] = None) -> None:
        """module: a ProgramModule (trained in place); data: from learning.prepare_data; config: checked settings;
        callback(epoch, minibatch index, loss) after each minibatch (default None); on_synch() after each write of
        the trained values to the Program (default None)."""
        self.module, self.data, self.config = module, data, config
        self.callback, self.on_synch = callback, on_synch
        dtype = module.dtype
        dev = next(iter(module.buffers()), next(iter(module.parameters()), None))
        self.device = dev.device if dev is not None else torch.device("cpu")
        self.x = {k: torch.as_tensor(v, dtype=dtype, device=self.device) for k, v in data.inputs.items()}
        self.t = {k: torch.as_tensor(v, dtype=dtype, device=self.device) for k, v in data.targets.items()}
        self.optimizer = make_optimizer(module, config)
        self.loss_fn = resolved(get_loss(config.loss_spec).torch)
        self.synch = str(config.synch_projection_matrices).lower()
        self.losses: List[float] = []

    def train(self) -> LearnResult:
        """Run every epoch (or until early stopping) with the module in train() mode (BatchNormalization: batch
        statistics, running ones updated, as torch's), then back in eval(); the Program then holds the trained
        values (running statistics included)."""
        self.module.train()
        try:
            return self._train()
        finally:
            self.module.eval()

    def _train(self) -> LearnResult:
        config = self.config
        stopping = EarlyStopping(config.patience, config.min_delta)
        epoch_losses: List[float] = []
        last_outputs: List[MinibatchOutputs] = []
        every_epoch: List[List[MinibatchOutputs]] = []  # (for LearnResult.executed_outputs)
        stopped = False
        losses = self.losses
        start = time.perf_counter()
        epoch = 0
        for epoch, order in enumerate(self.data.epoch_orders(config)):
            first_loss = len(losses)
            last_outputs = self._epoch(epoch, order)
            every_epoch.append(last_outputs)
            epoch_loss = math.fsum(losses[first_loss:]) / (len(losses) - first_loss)  # (np.mean costs 25 us)
            epoch_losses.append(epoch_loss)
            if self.synch == "epoch":
                self._synch()
            if stopping.should_stop(epoch_loss):
                stopped = True
                log.info("early stopping after epoch %d (loss %.6g)", epoch + 1, epoch_loss)
                break
        self._synch()
        return LearnResult(self._outputs(last_outputs), losses, self.module.program, epoch + 1, stopped,
                           time.perf_counter() - start, epoch_losses,
                           [{k: torch.cat([out[k] for _, out in epoch_out]).cpu().numpy() for k in epoch_out[0][1]}
                            for epoch_out in every_epoch])

    def _epoch(self, epoch: int, order: Optional[np.ndarray]) -> List[MinibatchOutputs]:
        """One epoch's minibatches in `order` (None: trial order); returns each minibatch's rows and outputs."""
        module, x, t, optimizer, loss_fn = self.module, self.x, self.t, self.optimizer, self.loss_fn
        losses, callback, device = self.losses, self.callback, self.device
        synch_each = self.synch == "minibatch"
        n, mb = self.data.n, int(self.config.minibatch_size)
        epoch_outputs: List[MinibatchOutputs] = []
        for b0 in range(0, n, mb):
            if order is None:
                idx: Any = slice(b0, min(b0 + mb, n))
            else:
                idx = torch.as_tensor(order[b0:b0 + mb], device=device)
            out = module.forward({k: v[idx] for k, v in x.items()})  # (no module hooks in this inner loop)
            loss = None
            for k in t:  # summed over output nodes (no `0 +` node in the autograd graph)
                term = loss_fn(out[k], t[k][idx])
                loss = term if loss is None else loss + term
            assert loss is not None  # the program has at least one target
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            losses.append(value)
            epoch_outputs.append((idx, {k: o.detach() for k, o in out.items()}))
            if callback is not None:
                callback(epoch, len(losses) - 1, value)
            if synch_each:
                self._synch()
        return epoch_outputs

    def _synch(self) -> None:
        """The module's values to the Program, then on_synch."""
        self.module.write_to_program()
        if self.on_synch:
            self.on_synch()

    def _outputs(self, last_outputs: List[MinibatchOutputs]) -> Dict[str, np.ndarray]:
        """The final epoch's outputs in trial order (output name -> (trials, ...))."""
        program, n = self.module.program, self.data.n
        head = next(iter(self.data.targets.values())).shape[:2 if program.sequence else 1]
        outputs = {k: np.zeros(head + tuple(program.shapes.get(program.outputs[k], ()))) for k in program.outputs}
        for idx, out in last_outputs:
            rows = np.arange(n)[idx] if isinstance(idx, slice) else idx.cpu().numpy()
            for k, o in out.items():
                outputs[k][rows] = o.cpu().numpy()
        return outputs
