"""The training loss plot `mdfbridge train --plot` writes: every minibatch's loss as a light line, each epoch's mean
as a bold line over it, the x axis in epochs; for predictive coding the energy over the inference steps and the
accuracy over the epochs (matplotlib's Agg canvas; no display, no pyplot state)."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

LOG_DECADES = 2.0  # a y range spanning more decades than this is drawn on a log axis


def loss_figure(losses: Sequence[float], epoch_losses: Sequence[float], *, model: str = "model",
                optimizer: str = "?", learning_rate: Optional[float] = None, loss: str = "?",
                minibatch_size: Optional[int] = None, stopped_early: bool = False) -> Any:
    """A matplotlib Figure (`matplotlib.figure.Figure`, on an Agg canvas) of a training run.

    losses: each minibatch's value, in order; epoch_losses: each epoch's value (the mean of its minibatches', as
    `mdfbridge.learning.LearnResult.epoch_losses` holds them). With n = len(losses) / len(epoch_losses)
    minibatches per epoch, minibatch k (0-based) sits at x = (k + 1) / n and epoch e (1-based) at x = e. The y axis
    is logarithmic when every value is > 0 and max / min exceeds 10**LOG_DECADES. The title names the settings below
    and the number of epochs (len(epoch_losses)).

    model: the model's name in the title (default 'model'); optimizer: the optimizer's name (default '?');
    learning_rate: the rate (default None, printed '?'); loss: the loss function's name, in the title and the y
    label (default '?'); minibatch_size: trials per minibatch (default None, printed '?'); stopped_early: add
    '(stopped early)' to the title (default False).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    epochs = len(epoch_losses)
    per_epoch = len(losses) / epochs if epochs else 1.0
    xs = [(k + 1) / per_epoch for k in range(len(losses))]
    ax.plot(xs, list(losses), color="tab:blue", alpha=0.3, linewidth=0.8, label="minibatch loss")
    ax.plot(range(1, epochs + 1), list(epoch_losses), color="tab:blue", linewidth=2.2, label="epoch mean")
    values = [v for v in list(losses) + list(epoch_losses) if math.isfinite(v)]
    if values and min(values) > 0 and math.log10(max(values) / min(values)) > LOG_DECADES:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"loss ({loss})")
    ax.set_xlim(0, max(epochs, 1))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    lr = "?" if learning_rate is None else f"{learning_rate:g}"
    mb = "?" if minibatch_size is None else str(minibatch_size)
    ax.set_title(f"{model}: {optimizer}, lr {lr}, {loss} loss, minibatch {mb}, {epochs} epoch"
                 f"{'s' if epochs != 1 else ''}{' (stopped early)' if stopped_early else ''}", fontsize=10)
    fig.tight_layout()
    return fig


def save_loss_plot(fig: Any, path: Union[str, Path], *, force: bool = False) -> None:
    """Write the figure as a PNG (atomically: a failed write leaves no partial file).

    fig: a matplotlib Figure (`loss_figure`'s); path: the file to write (str or Path), at 100 dpi; force: replace
    a read-only file too (default False)."""
    from .document import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(Path(path), buf.getvalue(), force=force)


def pc_figure(energies: Sequence[Sequence[float]], epoch_accuracy: Sequence[float], epoch_losses: Sequence[float],
              per_epoch: int, *, model: str = "model", T: int = 0) -> Any:
    """A matplotlib Figure (Agg canvas) of a predictive-coding run: left, the energy over the inference steps
    (each epoch's mean over its minibatches, a line per epoch, early epochs light; the last point is the weight
    step's energy when a minibatch has one more than the inference steps), right, the accuracy over the epochs
    (the loss where there is none).

    energies: each minibatch's energies (`PredictiveCoding.energies`); epoch_accuracy: each epoch's fraction of
    trials classified right (`PredictiveCoding.epoch_accuracy`; empty: plot epoch_losses); epoch_losses: each
    epoch's mean loss; per_epoch: minibatches per epoch; model: the name in the title (default 'model'); T: the
    inference steps (default 0: the length of the energies)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    per_epoch = max(int(per_epoch), 1)
    epochs = [energies[k:k + per_epoch] for k in range(0, len(energies), per_epoch)]
    cmap = colormaps["viridis"]
    for e, rows in enumerate(epochs):
        width = min(len(r) for r in rows)
        mean = [math.fsum(r[j] for r in rows) / len(rows) for j in range(width)]
        shade = e / max(len(epochs) - 1, 1)
        left.plot(range(width), mean, color=cmap(shade), marker="o", markersize=3, linewidth=1.2,
                  label=f"epoch {e + 1}" if e in (0, len(epochs) - 1) else None)
    steps = T or (min(len(r) for r in energies) if energies else 0)
    left.set_xlabel(f"inference step (0..{steps - 1})" + (f"; {steps}: the weight step" if energies and
                                                          min(len(r) for r in energies) > steps else ""))
    left.set_ylabel("energy (mean over the minibatch)")
    left.grid(True, alpha=0.3)
    if epochs:
        left.legend(loc="upper right")
    if epoch_accuracy:
        right.plot(range(1, len(epoch_accuracy) + 1), [100 * a for a in epoch_accuracy], marker="o",
                   color="tab:green")
        right.set_ylabel("training accuracy (%), before each update")
    else:
        right.plot(range(1, len(epoch_losses) + 1), list(epoch_losses), marker="o", color="tab:blue")
        right.set_ylabel("loss")
    right.set_xlabel("epoch")
    right.grid(True, alpha=0.3)
    fig.suptitle(f"{model}: predictive coding, T={steps}, {len(epochs)} epoch{'s' if len(epochs) != 1 else ''}",
                 fontsize=10)
    fig.tight_layout()
    return fig
