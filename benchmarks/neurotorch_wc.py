"""NeuroTorch's column of benchmarks/bench_sequence_learning.py: NeuroTorch 0.0.2's learning algorithms on its own
Wilson-Cowan tutorial task (a WilsonCowanLayer of N units forecasts T steps of smooth traces from the first step).

Run with the separate venv that has NeuroTorch 0.0.2 (benchmarks/make_neurotorch_venv.sh), not mdfbridge's:

    /work/nt-venv/bin/python benchmarks/neurotorch_wc.py --data TASK.npz --algorithm bptt|tbptt|eprop|rls \
        --iterations K [--seed 0]

TASK.npz holds ``traces`` (T, N) in (0.1, 0.9), ``W0`` (N, N) the initial forward weights, and the scalars ``dt``,
``tau``, ``learning_rate`` and ``backward_time_steps`` (tbptt's truncation).

The model is mdfbridge's: x[t+1] = x[t] (1 - dt/tau) + dt/tau (1 - r x[t]) sigmoid(x[t] @ W - mu), r = 0, mu = 0,
tau and dt fixed, only W (the layer's forward_weights, initialised to W0) learned; no recurrent connection (the
layer is fed its own previous output, SequentialRNN's forecasting), hh_init="inputs" (the state starts at
traces[0]), batch size 1, no Dale's law, regularisation, early stopping or checkpoint files. NeuroTorch computes in
float32 (its layers and SequentialRNN cast to it). As in the tutorial, an iteration is one pass of the Trainer over
the one sequence: the input is traces[0], the target traces[1:], and the model forecasts the T - 1 steps after the
first, so the training losses are means over those T - 1 points; the final fit is scored on all T points,
traces[0] followed by that forecast, against traces (the prediction of step k is compared with traces[k]).

Algorithms (NeuroTorch's own classes, with their defaults except where said):

- bptt: BPTT with torch.optim.Adam(W, lr=learning_rate) on torch.nn.MSELoss.
- tbptt: TBPTT(backward_time_steps = optim_time_steps = backward_time_steps), the same optimizer and criterion.
  In 0.0.2 it fails from the third pass when T - 1 is not a multiple of backward_time_steps (T = 100 with 10):
  reported as an error, see known_cause.
- eprop: Eprop(criterion=torch.nn.MSELoss(), output_params=[W]). With one layer NeuroTorch sees W as the output
  layer's weights: no hidden parameters, so no random feedbacks are used; each step's gradient is the one-step local
  one (backward_time_steps = optim_time_steps = 1, output eligibility decay alpha = 1e-3), applied by its default
  optimizer, AdamW(lr=output_params_lr=2e-5, weight_decay=1e-2). output_params=[W] keeps that optimizer off the
  layer's fixed tau, whose parameter it would otherwise shrink by weight decay.
- rls: RLS(params=[W], strategy="inputs", is_recurrent=True, criterion=torch.nn.MSELoss()): an RLS step every time
  step (backward_time_steps from auto ratio 0 -> 1, delta = Lambda = kappa = 1), its direction applied by its default
  optimizer, AdamW(lr=params_lr=2e-4, weight_decay=0).

Prints one JSON object as the last line of stdout: algorithm, pvar (1 - MSE / Var(traces) over all time points and
units, computed in numpy), seconds_per_iteration (wall time of Trainer.train / iterations), iterations, dtype,
peak_rss_mb (ru_maxrss at the end) and neurotorch_version; where NeuroTorch fails, "error" takes the place of
pvar and seconds_per_iteration (exit status 0). NeuroTorch's own output goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import time
from typing import Any, Dict, List, Sequence

import neurotorch as nt
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

ALGORITHMS = ("bptt", "tbptt", "eprop", "rls")
DTYPE = torch.float32
DEVICE = torch.device("cpu")
CHECKPOINT_FOLDER = "/tmp/neurotorch_wc_checkpoints"  # SequentialRNN wants one; nothing here saves to it


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="task .npz (traces, W0, dt, tau, learning_rate, backward_time_steps)")
    ap.add_argument("--algorithm", required=True, choices=ALGORITHMS)
    ap.add_argument("--iterations", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def load_task(path: str) -> Dict[str, Any]:
    """The task file's arrays and scalars."""
    with np.load(path) as f:
        task = {
            "traces": np.asarray(f["traces"], dtype=np.float64),
            "W0": np.asarray(f["W0"], dtype=np.float64),
            "dt": float(f["dt"]),
            "tau": float(f["tau"]),
            "learning_rate": float(f["learning_rate"]),
            "backward_time_steps": int(f["backward_time_steps"]),
        }
    steps, units = task["traces"].shape
    if task["W0"].shape != (units, units):
        raise ValueError(f"W0 is {task['W0'].shape}, traces have {units} units")
    if steps < 2:
        raise ValueError("traces need at least 2 time steps")
    return task


def build_model(task: Dict[str, Any]) -> nt.SequentialRNN:
    """A SequentialRNN of one WilsonCowanLayer that forecasts T - 1 steps after the given first one."""
    steps, units = task["traces"].shape
    layer = nt.WilsonCowanLayer(
        units,
        units,
        dt=task["dt"],
        tau=task["tau"],
        learn_tau=False,
        mu=0.0,
        learn_mu=False,
        r=0.0,
        learn_r=False,
        forward_weights=task["W0"].astype(np.float32),
        activation="sigmoid",
        hh_init="inputs",
        use_recurrent_connection=False,
        force_dale_law=False,
        device=DEVICE,
        name="wilson_cowan",
    ).build()
    return nt.SequentialRNN(
        layers=[layer], foresight_time_steps=steps - 1, device=DEVICE, checkpoint_folder=CHECKPOINT_FOLDER
    ).build()


def forward_weights(model: nt.SequentialRNN) -> torch.nn.Parameter:
    """The one learned parameter, W."""
    (layer,) = model.get_all_layers()
    return layer.get_forward_weights_parameter()


def make_dataloader(traces: np.ndarray) -> DataLoader:
    """The tutorial's one sample: input traces[0] (1, 1, N), target traces[1:] (1, T - 1, N)."""
    x = torch.as_tensor(traces, dtype=DTYPE)
    return DataLoader(TensorDataset(x[None, :1], x[None, 1:]), batch_size=1, shuffle=False)


def make_algorithm(name: str, model: nt.SequentialRNN, task: Dict[str, Any]) -> Any:
    """NeuroTorch's learning algorithm `name` for W."""
    w = forward_weights(model)
    mse = torch.nn.MSELoss()
    if name == "bptt":
        return nt.BPTT(optimizer=torch.optim.Adam([w], lr=task["learning_rate"]), criterion=mse)
    if name == "tbptt":
        steps = task["backward_time_steps"]
        return nt.TBPTT(
            optimizer=torch.optim.Adam([w], lr=task["learning_rate"]),
            criterion=mse,
            backward_time_steps=steps,
            optim_time_steps=steps,
        )
    if name == "eprop":
        return nt.Eprop(criterion=mse, output_params=[w])
    if name == "rls":
        return nt.RLS(params=[w], strategy="inputs", is_recurrent=True, criterion=mse)
    raise ValueError(f"unknown algorithm {name!r}")


def train(model: nt.SequentialRNN, algorithm: Any, traces: np.ndarray, iterations: int) -> float:
    """Trainer.train for `iterations` iterations; its wall seconds."""
    trainer = nt.trainers.Trainer(model, predict_method="get_prediction_trace", callbacks=[algorithm], verbose=False)
    loader = make_dataloader(traces)
    start = time.perf_counter()
    trainer.train(loader, n_iterations=iterations)
    return time.perf_counter() - start


def predict(model: nt.SequentialRNN, traces: np.ndarray) -> np.ndarray:
    """All T points, (T, N): traces[0] then the model's forecast of the T - 1 steps after it."""
    model.eval()
    with torch.no_grad():
        x0 = torch.as_tensor(traces[None, :1], dtype=DTYPE, device=DEVICE)
        forecast = model.get_prediction_trace(x0)
    return np.concatenate([traces[:1], forecast[0].detach().cpu().numpy().astype(np.float64)], axis=0)


def pvar(prediction: np.ndarray, target: np.ndarray) -> float:
    """1 - MSE / Var(target), over all time points and units."""
    return float(1.0 - np.mean((prediction - target) ** 2) / np.var(target))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_line(error: BaseException) -> str:
    """The exception's type and first sentence."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0].split('. ')[0] if text else ''}"[:300]


def known_cause(name: str, task: Dict[str, Any]) -> str:
    """Why NeuroTorch 0.0.2 fails where the cause is known, else ''."""
    forecast = task["traces"].shape[0] - 1
    window = task["backward_time_steps"]
    if name == "tbptt" and forecast % window:
        return (
            f"TBPTT's optimizer-step counter carries the last {forecast} % {window} = {forecast % window} steps of "
            "a pass into the next (their loss is dropped), so from the third pass its optimizer step lands inside "
            "a backward window and autograd finds W modified in place; "
        )
    return ""


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Build, train and score; the result record (or an error record)."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    task = load_task(args.data)
    traces = task["traces"]
    with contextlib.redirect_stdout(sys.stderr):
        model = build_model(task)
        try:
            seconds = train(model, make_algorithm(args.algorithm, model, task), traces, args.iterations)
        except Exception as error:  # an algorithm that NeuroTorch 0.0.2 cannot run on this model
            cause = known_cause(args.algorithm, task)
            return {"error": f"NeuroTorch {nt.__version__} {args.algorithm}: {cause}{first_line(error)}"}
        prediction = predict(model, traces)
    return {"pvar": pvar(prediction, traces), "seconds_per_iteration": seconds / max(args.iterations, 1)}


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    result = {
        "algorithm": args.algorithm,
        **run(args),
        "iterations": args.iterations,
        "dtype": "float32",
        "peak_rss_mb": peak_rss_mb(),
        "neurotorch_version": nt.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
