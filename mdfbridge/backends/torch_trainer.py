"""The torch backend's trainer: epochs of minibatches over a ProgramModule, each trained by a learning algorithm's
hooks (mdfbridge.learning.algorithms; default Backprop, AutodiffComposition semantics).

Per minibatch: the algorithm's forward (one pass, or a sequence stepped through time) and update (Backprop: the
loss summed over the output nodes with targets, backward, one optimizer step); the minibatch's loss and outputs
(taken before its update) are kept. Per epoch: the epoch loss (mean of its minibatch losses), early stopping and,
with `LearnConfig.checkpoint`, a checkpoint (weights, optimizer and algorithm state, losses; resumed with
`LearnConfig.resume`). The trained values reach the Program per `synch_projection_matrices` and at the end.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from ..errors import DataError, UnsupportedError
from ..lazy_function import resolved
from ..learning import EarlyStopping, LearnConfig, LearnResult, TrainingData
from ..learning.algorithms import Batch, LearningAlgorithm, get_algorithm, unroll
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
        loss = get_loss(config.loss_spec)
        self.loss_fn, self.loss_is_mean = resolved(loss.torch), loss.reduction == "mean"
        self.synch = str(config.synch_projection_matrices).lower()
        self.losses: List[float] = []
        self.algorithm: LearningAlgorithm = get_algorithm(config.algorithm)
        self.time_steps = data.steps  # time points of each sequence (0: not stepped through time)
        self.epochs_done = 0  # epochs before this run (from a checkpoint)
        self.epoch_losses: List[float] = []
        self.stopping = EarlyStopping(config.patience, config.min_delta)

    def loss(self, pred: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss of outputs `pred` against targets `y`, summed over the outputs with targets (a sequence's
        whole loss when the data are stepped through time)."""
        if self.time_steps:
            loss = self.sequence_loss(pred, y, 0, self.time_steps)
            assert loss is not None  # (every output with targets has a last step)
            return loss
        total = None
        for k, t in y.items():  # (no `0 +` node in the autograd graph)
            term = self.loss_fn(pred[k], t)
            total = term if total is None else total + term
        assert total is not None  # the program has at least one target
        return total

    def sequence_loss(self, pred: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor], start: int,
                      stop: int) -> Optional[torch.Tensor]:
        """The share of time steps [start, stop) in the loss of whole sequences: `pred` holds those steps' outputs
        (batch, stop - start, ...); targets are per step (batch, steps, ...) or for the last step (batch, ...).
        Each output's loss is over its (batch x steps, ...) rows; a mean loss is weighted by (stop - start) /
        steps, so the shares of consecutive chunks sum to the whole sequence's loss. None: no targets fall in
        the steps."""
        total = None
        for k, t in y.items():
            p = pred[k]
            if t.dim() == p.dim():  # per step
                rows = t[:, start:stop]
                term = self.loss_fn(p.reshape((-1,) + tuple(p.shape[2:])), rows.reshape((-1,) + tuple(t.shape[2:])))
                if self.loss_is_mean:
                    term = term * ((stop - start) / self.time_steps)
            elif stop == self.time_steps:  # the last step only
                term = self.loss_fn(p[:, -1], t)
            else:
                continue
            total = term if total is None else total + term
        return total

    def train(self) -> LearnResult:
        """Run every epoch (or until early stopping) with the module in train() mode (BatchNormalization: batch
        statistics, running ones updated, as torch's), then back in eval(); the Program then holds the trained
        values (running statistics included). After the algorithm's start, a checkpoint is resumed when asked for
        and present."""
        config = self.config
        self.algorithm.start(self)
        try:
            if config.resume and config.checkpoint is not None and os.path.exists(config.checkpoint):
                self.load_checkpoint(config.checkpoint)
            self.module.train()
            return self._train()
        finally:
            self.algorithm.close(self)
            self.module.eval()

    def _train(self) -> LearnResult:
        config = self.config
        last_outputs: List[MinibatchOutputs] = []
        every_epoch: List[List[MinibatchOutputs]] = []  # (for LearnResult.executed_outputs)
        stopped = False
        losses, epoch_losses = self.losses, self.epoch_losses
        start = time.perf_counter()
        epoch = self.epochs_done - 1
        for epoch, order in enumerate(self.data.epoch_orders(config)):
            if epoch < self.epochs_done:  # (trained before the checkpoint; its shuffle is drawn all the same)
                continue
            first_loss = len(losses)
            last_outputs = self._epoch(epoch, order)
            every_epoch.append(last_outputs)
            epoch_loss = math.fsum(losses[first_loss:]) / (len(losses) - first_loss)  # (np.mean costs 25 us)
            epoch_losses.append(epoch_loss)
            if self.synch == "epoch":
                self._synch()
            stopped = self.stopping.should_stop(epoch_loss)
            if config.checkpoint is not None:
                self.save_checkpoint(config.checkpoint, epoch + 1, stopped)
            if stopped:
                log.info("early stopping after epoch %d (loss %.6g)", epoch + 1, epoch_loss)
                break
        self._synch()
        if not last_outputs:  # (resumed from a checkpoint of the whole run: outputs of one pass, no update)
            last_outputs = self._outputs_without_update()
        return LearnResult(self._outputs(last_outputs), losses, self.module.program, epoch + 1, stopped,
                           time.perf_counter() - start, epoch_losses,
                           [{k: torch.cat([out[k] for _, out in epoch_out]).cpu().numpy() for k in epoch_out[0][1]}
                            for epoch_out in every_epoch])

    def _epoch(self, epoch: int, order: Optional[np.ndarray]) -> List[MinibatchOutputs]:
        """One epoch's minibatches in `order` (None: trial order); returns each minibatch's rows and outputs."""
        x, t, algorithm = self.x, self.t, self.algorithm
        losses, callback, device = self.losses, self.callback, self.device
        synch_each = self.synch == "minibatch"
        n, mb = self.data.n, int(self.config.minibatch_size)
        epoch_outputs: List[MinibatchOutputs] = []
        for b0 in range(0, n, mb):
            if order is None:
                idx: Any = slice(b0, min(b0 + mb, n))
            else:
                idx = torch.as_tensor(order[b0:b0 + mb], device=device)
            batch = Batch(epoch, len(losses), idx, {k: v[idx] for k, v in x.items()}, {k: v[idx] for k, v in t.items()})
            algorithm.on_batch_begin(self, batch)
            batch.pred = algorithm.forward(self, batch)
            algorithm.on_optimization_begin(self, batch)
            algorithm.on_optimization_end(self, batch)
            algorithm.on_batch_end(self, batch)
            assert batch.loss is not None, f"{algorithm!r} set no loss"
            value = float(batch.loss)
            losses.append(value)
            epoch_outputs.append((idx, {k: o.detach() for k, o in batch.pred.items()}))
            if callback is not None:
                callback(epoch, len(losses) - 1, value)
            if synch_each:
                self._synch()
        return epoch_outputs

    def _outputs_without_update(self) -> List[MinibatchOutputs]:
        """The outputs of one pass over every trial with the current weights, without an update (BPTT's unrolled
        pass for sequences stepped through time)."""
        batch = Batch(self.epochs_done, len(self.losses), slice(0, self.data.n), self.x, self.t)
        with torch.no_grad():
            pred = (unroll(self, batch, getattr(self.algorithm, "dt", 1.0)) if self.time_steps
                    else self.module.forward(self.x))
        return [(slice(0, self.data.n), pred)]

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, epochs_done: int, stopped: bool) -> Dict[str, Any]:
        """What a checkpoint holds after `epochs_done` epochs."""
        return {"algorithm": self.algorithm.name, "program": self.module.program.fingerprint(),
                "epochs_done": epochs_done, "stopped": stopped, "losses": list(self.losses),
                "epoch_losses": list(self.epoch_losses),
                "stopping": {"best": float(self.stopping.best), "waited": int(self.stopping.waited)},
                "module": dict(self.module.state_dict()), "optimizer": self.optimizer.state_dict(),
                "algorithm_state": self.algorithm.get_checkpoint_state(self)}

    def save_checkpoint(self, path: str, epochs_done: int, stopped: bool = False) -> None:
        """Write the checkpoint file (atomically) after `epochs_done` epochs."""
        from ..learning.checkpoints import save_checkpoint

        save_checkpoint(path, self.checkpoint_state(epochs_done, stopped))
        log.debug("checkpoint after epoch %d: %s", epochs_done, path)

    def load_checkpoint(self, path: str) -> None:
        """Continue from a checkpoint: weights, optimizer and algorithm state, losses, epochs done. One written
        for another model or algorithm raises DataError naming the file."""
        from ..learning.checkpoints import load_checkpoint

        state = load_checkpoint(path)
        if state.get("program") != self.module.program.fingerprint():
            raise DataError("the checkpoint was written for another model (its structure or parameter shapes "
                            "differ)", where=path)
        if state.get("algorithm") != self.algorithm.name:
            raise DataError(f"the checkpoint was written by algorithm '{state.get('algorithm')}', not "
                            f"'{self.algorithm.name}'", where=path)
        try:
            self.module.load_state_dict(state["module"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise DataError(f"the checkpoint does not fit this model and optimizer: {exc}", where=path) from None
        self.algorithm.load_checkpoint_state(self, state.get("algorithm_state") or {})
        self.epochs_done = int(state["epochs_done"])
        self.losses[:] = [float(v) for v in state["losses"]]
        self.epoch_losses[:] = [float(v) for v in state["epoch_losses"]]
        self.stopping.best = float(state["stopping"]["best"])
        self.stopping.waited = int(state["stopping"]["waited"])
        if state.get("stopped"):  # (the run had stopped early: nothing more to train)
            self.epochs_done = max(self.epochs_done, int(self.config.epochs))
        log.info("resumed from %s after epoch %d", path, self.epochs_done)

    def _synch(self) -> None:
        """The module's values to the Program, then on_synch."""
        self.module.write_to_program()
        if self.on_synch:
            self.on_synch()

    def _outputs(self, last_outputs: List[MinibatchOutputs]) -> Dict[str, np.ndarray]:
        """The final epoch's outputs in trial order (output name -> (trials, ...), or (trials, time steps, ...) for
        sequences)."""
        program, n = self.module.program, self.data.n
        head = ((n, self.time_steps) if self.time_steps else
                next(iter(self.data.targets.values())).shape[:2 if program.sequence else 1])
        outputs = {k: np.zeros(head + tuple(program.shapes.get(program.outputs[k], ()))) for k in program.outputs}
        for idx, out in last_outputs:
            rows = np.arange(n)[idx] if isinstance(idx, slice) else idx.cpu().numpy()
            for k, o in out.items():
                outputs[k][rows] = o.cpu().numpy()
        return outputs
