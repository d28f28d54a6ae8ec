"""pcx 0.6.3's predictive-coding two-moons tutorial (pcax "Tutorial #0: Predictive Coding Networks"), reproduced as a
reference for mdfbridge's predictive coding: accuracy per epoch, final test accuracy and the CPU time of training.

The experiment is the tutorial's, with its pcax names ported to pcx 0.6.3 (``pxu.Mask(f, v)`` -> ``pxu.M(f).to(v)``,
``pxu.m(...).has_not`` -> ``pxu.M(...).hasnot``, ``pxc.Vode`` takes no shape, ``pxu.Optim`` takes an optimiser
factory): two moons (``make_moons(1024, noise=0.2, random_state=42)`` to train, ``make_moons(512, noise=0.2,
random_state=0)`` to test, batches of 32), a 2-32-32-2 network of three ``pxnn.Linear`` layers with
``jax.nn.leaky_relu`` on the hidden layers, a squared-error vode after each hidden layer and a cross-entropy vode at the
output whose ``h`` is frozen to the one-hot label; per batch a forward initialisation, T=8 inference steps with
``optax.sgd(1e-2 * 32)`` on the vodes, then one ``optax.adamw(1e-2)`` step on the weights; 8 epochs (256 steps), the
training batches shuffled with ``random.shuffle`` each epoch; test accuracy by a forward pass and argmax.

Each seed seeds ``px.RKG`` (so the layers' initialisation) and python's ``random`` (the shuffling), and builds its own
jitted functions, so each seed compiles afresh. The compile is timed apart: the first ``train_on_batch`` and
``eval_on_batch`` calls are made on the seed's model and optimisers, whose every dynamic value (weights, vodes,
optimiser states, px.RKG's key) is saved before and put back after, so training starts untouched and its calls hit
the jit cache (a trace counter checks this: 1 train and 1 eval trace per seed); the CPU time of these first calls,
which includes one executed step each, is the compile time. The training time is ``time.process_time`` summed over
the 256 ``train_on_batch`` calls (each epoch's loop, blocked on the weights at its end), without evaluation.

Run with the venv that benchmarks/make_pcx_venv.sh makes, not mdfbridge's:

    /work/pcx-venv/bin/python benchmarks/pcx_two_moons.py --seeds 0 1 2 3 4 --json /tmp/pcx_two_moons.json
        [--weights-out DIR] [--weights-in DIR]

``--weights-out DIR`` saves each seed's initial weights as DIR/seed{N}.npz (W0, b0, W1, b1, W2, b2 with
y = x @ W + b, W of shape (in, out)); ``--weights-in DIR`` starts from such files instead of pcx's initialisation.
"""

import argparse
import json
import platform
import random
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import jax
import jax.tree_util as jtu
import numpy as np
import optax
import pcx as px
import pcx.functional as pxf
import pcx.nn as pxnn
import pcx.predictive_coding as pxc
import pcx.utils as pxu
from pcx.core._parameter import DynamicParam
from sklearn.datasets import make_moons

BATCH_SIZE = 32
NM_ELEMENTS = 1024
T_INFERENCE = 8
NM_EPOCHS = 256 // (NM_ELEMENTS // BATCH_SIZE)

# How many times each jitted function was traced (a python side effect that runs only while tracing).
TRACES = {"train": 0, "eval": 0}


class Model(pxc.EnergyModule):
    """The tutorial's network: Linear layers, each followed by a vode; the last vode has the cross-entropy energy and
    a frozen ``h`` (the label during training)."""

    def __init__(
        self, input_dim: int, hidden_dim: int, output_dim: int, nm_layers: int, act_fn: Callable[[jax.Array], jax.Array]
    ) -> None:
        super().__init__()
        self.act_fn = px.static(act_fn)
        self.layers = (
            [pxnn.Linear(input_dim, hidden_dim)]
            + [pxnn.Linear(hidden_dim, hidden_dim) for _ in range(nm_layers - 2)]
            + [pxnn.Linear(hidden_dim, output_dim)]
        )
        self.vodes = [pxc.Vode() for _ in range(nm_layers - 1)] + [pxc.Vode(pxc.ce_energy)]
        self.vodes[-1].h.frozen = True

    def __call__(self, x, y):
        for v, layer in zip(self.vodes[:-1], self.layers[:-1]):
            x = v(self.act_fn(layer(x)))
        x = self.vodes[-1](self.layers[-1](x))
        if y is not None:
            self.vodes[-1].set("h", y)
        return self.vodes[-1].get("u")


@pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0, 0), out_axes=0)
def forward(x, y, *, model: Model):
    return model(x, y)


@pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0,), out_axes=(None, 0), axis_name="batch")
def energy(x, *, model: Model):
    y_ = model(x, None)
    return jax.lax.pmean(model.energy().sum(), "batch"), y_


def make_steps():
    """Fresh jitted ``train_on_batch(T, x, y, *, model, optim_w, optim_h)`` and ``eval_on_batch(x, y, *, model)``
    (the tutorial's), so that each caller compiles its own."""

    @pxf.jit(static_argnums=0)
    def train_on_batch(T: int, x: jax.Array, y: jax.Array, *, model: Model, optim_w: pxu.Optim, optim_h: pxu.Optim):
        TRACES["train"] += 1
        model.train()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            forward(x, y, model=model)
        for _ in range(T):
            with pxu.step(model, clear_params=pxc.VodeParam.Cache):
                (e, y_), g = pxf.value_and_grad(
                    pxu.M(pxc.VodeParam).hasnot(frozen=True).to([False, True]), has_aux=True
                )(energy)(x, model=model)
            optim_h.step(model, g["model"])
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            (e, y_), g = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)(
                x, model=model
            )
        optim_w.step(model, g["model"])

    @pxf.jit()
    def eval_on_batch(x: jax.Array, y: jax.Array, *, model: Model):
        TRACES["eval"] += 1
        model.eval()
        with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
            y_ = forward(x, None, model=model).argmax(axis=-1)
        return (y_ == y).mean(), y_

    return train_on_batch, eval_on_batch


def datasets():
    """The tutorial's train batches (a list, shuffled in place each epoch) and test batches."""
    X, y = make_moons(n_samples=BATCH_SIZE * (NM_ELEMENTS // BATCH_SIZE), noise=0.2, random_state=42)
    train_dl = list(zip(X.reshape(-1, BATCH_SIZE, 2), y.reshape(-1, BATCH_SIZE)))
    X_test, y_test = make_moons(n_samples=BATCH_SIZE * (NM_ELEMENTS // BATCH_SIZE) // 2, noise=0.2, random_state=0)
    test_dl = tuple(zip(X_test.reshape(-1, BATCH_SIZE, 2), y_test.reshape(-1, BATCH_SIZE)))
    return train_dl, test_dl


def get_weights(model: Model) -> dict:
    """The layers' weights as numpy arrays W{i} (in, out) and b{i} (out,), i.e. y = x @ W + b (equinox stores
    the transpose)."""
    out = {}
    for i, layer in enumerate(model.layers):
        out[f"W{i}"] = np.asarray(layer.nn.weight.get()).T.copy()
        out[f"b{i}"] = np.asarray(layer.nn.bias.get()).copy()
    return out


def set_weights(model: Model, weights) -> None:
    """Replace the layers' weights with W{i} (in, out), b{i} (out,) in the layout y = x @ W + b."""
    for i, layer in enumerate(model.layers):
        w, b = layer.nn.weight.get(), layer.nn.bias.get()
        new_w = np.asarray(weights[f"W{i}"], dtype=np.float32).T
        new_b = np.asarray(weights[f"b{i}"], dtype=np.float32)
        if new_w.shape != w.shape or new_b.shape != b.shape:
            raise ValueError(
                f"layer {i}: expected W {w.shape[::-1]}, b {b.shape}; got {new_w.shape[::-1]}, {new_b.shape}"
            )
        layer.nn.weight.set(jax.numpy.asarray(new_w, dtype=w.dtype))
        layer.nn.bias.set(jax.numpy.asarray(new_b, dtype=b.dtype))


# pcx 0.6.3's Optim takes a factory of the optax transformation (the tutorial's older Optim took the transformation).
_OPTAX_H = optax.sgd(1e-2 * BATCH_SIZE)
_OPTAX_W = optax.adamw(1e-2)


def _optim_h():
    return _OPTAX_H


def _optim_w():
    return _OPTAX_W


def build(seed: int, weights_in: Path | None = None):
    """Model and optimisers for one seed, as the tutorial makes them (a dummy forward pass first, so that the vodes'
    parameters exist for the optimisers); the initial weights optionally replaced from ``weights_in/seed{N}.npz``."""
    px.RKG.seed(seed)
    model = Model(input_dim=2, hidden_dim=32, output_dim=2, nm_layers=3, act_fn=jax.nn.leaky_relu)
    if weights_in is not None:
        with np.load(weights_in / f"seed{seed}.npz") as f:
            set_weights(model, f)
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jax.numpy.zeros((BATCH_SIZE, 2)), None, model=model)
        # The tutorial gives optim_h every VodeParam (its older Optim skipped the frozen one's missing gradient);
        # pcx 0.6.3's Optim.step refuses missing gradients, so the frozen output vode is left out here (the same
        # update: plain SGD is stateless and the frozen vode never moves).
        optim_h = pxu.Optim(_optim_h, pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
        optim_w = pxu.Optim(_optim_w, pxu.M(pxnn.LayerParam)(model))
    return model, optim_w, optim_h


def snapshot(tree) -> list:
    """The current values of every dynamic pcx parameter in ``tree`` (jax arrays are immutable, dicts are copied)."""
    params = jtu.tree_leaves(tree, is_leaf=lambda p: isinstance(p, px.BaseParam))
    return [
        (p, dict(p._value) if isinstance(p._value, dict) else p._value) for p in params if isinstance(p, DynamicParam)
    ]


def restore(saved: list) -> None:
    """Put back the values that ``snapshot`` took."""
    for p, value in saved:
        p._value = value


def evaluate(eval_on_batch, dl, *, model: Model):
    acc, ys_ = [], []
    for x, y in dl:
        a, y_ = eval_on_batch(x, y, model=model)
        acc.append(a)
        ys_.append(y_)
    return float(np.mean(acc)), np.concatenate(ys_)


def run_seed(seed: int, weights_in: Path | None = None, weights_out: Path | None = None) -> dict:
    """Train and evaluate one seed; returns accuracies (percent) and times (seconds)."""
    model, optim_w, optim_h = build(seed, weights_in)
    if weights_out is not None:
        weights_out.mkdir(parents=True, exist_ok=True)
        np.savez(weights_out / f"seed{seed}.npz", **get_weights(model))
    train_dl, test_dl = datasets()
    train_on_batch, eval_on_batch = make_steps()
    traces0 = dict(TRACES)

    # Compile on the real model and optimisers, then put back every dynamic value they (and px.RKG) held, so training
    # starts from the untouched state; the timed calls then hit the jit cache. (A twin built the same way does not:
    # pcx's Optim keeps a static copy of the model's structure, compared by identity in the jit cache key; and
    # copy.deepcopy fails on pcx's StaticParam.)
    saved = snapshot((model, optim_w, optim_h, px.RKG))
    x0, y0 = train_dl[0]
    c0, w0 = time.process_time(), time.perf_counter()
    train_on_batch(T_INFERENCE, x0, jax.nn.one_hot(y0, 2), model=model, optim_w=optim_w, optim_h=optim_h)
    jax.block_until_ready(model.layers[-1].nn.weight.get())
    c1, w1 = time.process_time(), time.perf_counter()
    jax.block_until_ready(eval_on_batch(*test_dl[0], model=model))
    c2, w2 = time.process_time(), time.perf_counter()
    restore(saved)

    random.seed(seed)
    epoch_acc, train_cpu, train_wall = [], 0.0, 0.0
    for _ in range(NM_EPOCHS):
        random.shuffle(train_dl)
        t0, s0 = time.process_time(), time.perf_counter()
        for x, y in train_dl:
            train_on_batch(T_INFERENCE, x, jax.nn.one_hot(y, 2), model=model, optim_w=optim_w, optim_h=optim_h)
        jax.block_until_ready(model.layers[-1].nn.weight.get())
        train_cpu += time.process_time() - t0
        train_wall += time.perf_counter() - s0
        a, _ = evaluate(eval_on_batch, test_dl, model=model)
        epoch_acc.append(100.0 * a)
    return {
        "seed": seed,
        "epoch_test_acc": epoch_acc,
        "final_test_acc": epoch_acc[-1],
        "train_steps": NM_EPOCHS * len(train_dl),
        "train_cpu_s": train_cpu,
        "train_wall_s": train_wall,
        "compile_train_cpu_s": c1 - c0,
        "compile_train_wall_s": w1 - w0,
        "compile_eval_cpu_s": c2 - c1,
        "compile_eval_wall_s": w2 - w1,
        "traces": {k: TRACES[k] - traces0[k] for k in TRACES},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--weights-out", type=Path, help="save each seed's initial weights as DIR/seed{N}.npz")
    parser.add_argument("--weights-in", type=Path, help="start from DIR/seed{N}.npz instead of pcx's init")
    args = parser.parse_args(argv)

    results = []
    for seed in args.seeds:
        r = run_seed(seed, args.weights_in, args.weights_out)
        results.append(r)
        epochs = " ".join(f"{a:.2f}" for a in r["epoch_test_acc"])
        print(
            f"seed {seed}: final {r['final_test_acc']:.2f}% | epochs {epochs} | train {r['train_steps']} steps "
            f"{r['train_cpu_s']:.3f} s CPU ({r['train_wall_s']:.3f} s wall) | compile train "
            f"{r['compile_train_cpu_s']:.1f} s CPU ({r['compile_train_wall_s']:.1f} s wall), eval "
            f"{r['compile_eval_cpu_s']:.1f} s CPU | traces {r['traces']}",
            flush=True,
        )
    acc = np.array([r["final_test_acc"] for r in results])
    cpu = np.array([r["train_cpu_s"] for r in results])
    comp = np.array([r["compile_train_cpu_s"] + r["compile_eval_cpu_s"] for r in results])
    summary = {
        "final_test_acc_mean": float(acc.mean()),
        "final_test_acc_std_ddof0": float(acc.std(ddof=0)),
        "train_cpu_s_mean": float(cpu.mean()),
        "compile_cpu_s_min": float(comp.min()),
        "compile_cpu_s_max": float(comp.max()),
    }
    print(
        f"summary over seeds {args.seeds}: final test accuracy {summary['final_test_acc_mean']:.2f}% +- "
        f"{summary['final_test_acc_std_ddof0']:.2f}% (population sd, numpy ddof=0); training CPU "
        f"{summary['train_cpu_s_mean']:.3f} s per run of {results[0]['train_steps']} steps excluding compile; "
        f"compile {summary['compile_cpu_s_min']:.1f}-{summary['compile_cpu_s_max']:.1f} s CPU"
    )
    if args.json is not None:
        versions = {p: version(p) for p in ("pcx", "jax", "jaxlib", "equinox", "optax", "numpy", "scikit-learn")}
        config = {
            "batch_size": BATCH_SIZE,
            "nm_elements": NM_ELEMENTS,
            "T": T_INFERENCE,
            "epochs": NM_EPOCHS,
            "optim_h": f"optax.sgd({1e-2 * BATCH_SIZE})",
            "optim_w": "optax.adamw(1e-2)",
            "weights_in": str(args.weights_in) if args.weights_in else None,
            "timing": "process_time of the train_on_batch calls; compile = first calls, model state restored after",
        }
        doc = {
            "versions": versions,
            "python": platform.python_version(),
            "config": config,
            "seeds": results,
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
