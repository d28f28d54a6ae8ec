"""pcx's predictive-coding tutorial on mdfbridge: two moons, a 2-32-32-2 composition with leaky ReLU hidden layers,
se energy on the hidden value nodes and ce energy on the output (frozen to the one-hot label), T=8 inference
steps with sgd(1e-2 x 32), one adamw(1e-2) weight step per minibatch of 32, 8 epochs. Prints the test accuracy
after every epoch, checks the trained weights written back into the MDF file against the trained module, and
saves the decision boundary as a PNG; then trains the same net in native code (backend 'llvm').

Data: scikit-learn's make_moons formula (`make_moons` below; equal to sklearn's, tested when it is installed).
Run: python examples/predictive_coding_two_moons.py [--out DIR]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from example_paths import output_dir  # noqa: E402

from mdfbridge import BiasMechanism, Composition, MappingProjection, ReLU, TransferMechanism  # noqa: E402

LEAK = 0.01  # jax.nn.leaky_relu's negative slope


def make_moons(n_samples: int, noise: float, random_state: int) -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's make_moons(n_samples, shuffle=True, noise, random_state) by its formula: two half circles,
    shuffled, then Gaussian noise, all from one numpy RandomState(random_state). Returns X (n, 2), y (n,) ints."""
    rng = np.random.RandomState(random_state)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    X = np.vstack([np.append(np.cos(outer), 1 - np.cos(inner)),
                   np.append(np.sin(outer), 1 - np.sin(inner) - 0.5)]).T
    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    order = np.arange(n_samples)
    rng.shuffle(order)
    X, y = X[order], y[order]
    X = X + rng.normal(scale=noise, size=X.shape)
    return X, y


def build_net(seed: int, sizes: Tuple[int, ...] = (2, 32, 32, 2)) -> Composition:
    """input -> hidden layers (leaky ReLU) -> output (linear), every layer with a bias node; weights and biases
    uniform in +-1/sqrt(fan in) (equinox's Linear init, which pcx's layers use), seeded."""
    rng = np.random.default_rng(seed)
    comp = Composition("two_moons")
    layers = [TransferMechanism("input", sizes[0])]
    for k, n in enumerate(sizes[1:], 1):
        last = k == len(sizes) - 1
        layers.append(TransferMechanism("output" if last else f"hidden{k}", n, None if last else ReLU(leak=LEAK)))
    pathway: List[Any] = [layers[0]]
    for k, (fan_in, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1 / np.sqrt(fan_in)
        pathway += [MappingProjection(matrix=rng.uniform(-bound, bound, (fan_in, n)), name=f"w{k + 1}"),
                    layers[k + 1]]
    comp.add_linear_processing_pathway(pathway)
    for k, (fan_in, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1 / np.sqrt(fan_in)
        comp.add_projection(MappingProjection(matrix=rng.uniform(-bound, bound, (1, n)), name=f"b{k + 1}"),
                            BiasMechanism(f"bias{k + 1}"), layers[k + 1])
    return comp


def moons_data() -> Dict[str, np.ndarray]:
    """The tutorial's sets: 1024 training points (noise 0.2, random_state 42), 512 test points (random_state 0)."""
    X, y = make_moons(1024, 0.2, 42)
    Xt, yt = make_moons(512, 0.2, 0)
    return {"X": X, "Y": np.eye(2)[y], "y": y, "X_test": Xt, "y_test": yt}


def main() -> None:
    import torch

    from mdfbridge import load_program, run_program, write_back
    from mdfbridge.learning import learn
    from mdfbridge.learning.algorithms import PredictiveCoding

    out = output_dir(__doc__.splitlines()[0])
    seed = 0
    torch.set_num_threads(1)  # (a 32-unit net: torch's thread pool only adds waiting)
    data = moons_data()
    comp = build_net(seed)
    model = out / "two_moons.mdf.json"
    comp.save_mdf(model)
    program = load_program(model)
    per_epoch = 1024 // 32
    accuracy: List[float] = []

    class Reported(PredictiveCoding):
        """The tutorial's PC, with the test accuracy measured after each epoch's last minibatch (a hook)."""

        def on_batch_end(self, trainer: Any, batch: Any) -> None:
            super().on_batch_end(trainer, batch)
            if (batch.index + 1) % per_epoch == 0:
                x = torch.as_tensor(data["X_test"], dtype=trainer.module.dtype)
                with torch.no_grad():
                    pred = trainer.module.forward({"input": x})["output"].argmax(-1).numpy()
                accuracy.append(float((pred == data["y_test"]).mean()))
                print(f"epoch {len(accuracy)}/8 - test accuracy {100 * accuracy[-1]:.2f}% - energy "
                      f"{self.epoch_energy[-1]:.4f}")

    pc = Reported(T=8, energy="ce", optim_w=("adamw", 1e-2))  # optim_h: sgd(1e-2 x 32), the default
    result = learn(program, {"input": data["X"]}, {"output": data["Y"]}, epochs=8, minibatch_size=32,
                   randomize_minibatches=True, seed=seed, algorithm=pc, dtype="float32")
    print(f"trained {len(pc.energies)} minibatches; energies kept per minibatch: {len(pc.energies[0])} (8 "
          f"inference steps, then the weight step): {pc.energies[-1][0]:.4f} -> {pc.energies[-1][-1]:.4f} on the "
          "last (benchmarks/bench_predictive_coding.py times runs)")
    trained = out / "two_moons.trained.mdf.json"
    write_back(model, result.program, trained)
    # the written file, run by mdfbridge's numpy reference, classifies the test set as the trained module did
    ran = run_program(load_program(trained), {"input": data["X_test"]})["output"].argmax(-1)
    same = float((ran == np.asarray(
        run_program(result.program, {"input": data["X_test"]})["output"]).argmax(-1)).mean())
    print(f"test accuracy of the written file: {100 * (ran == data['y_test']).mean():.2f}% "
          f"(same predictions as the trained program: {100 * same:.0f}%)")
    plot = out / "two_moons_decision_boundary.png"
    save_boundary(result.program, data, plot)
    print(f"wrote {model.name}, {trained.name} and {plot.name} in {out}")
    # the same run compiled to native code (backend 'llvm', float64; a hook-free PredictiveCoding)
    native = PredictiveCoding(T=8, energy="ce", optim_w=("adamw", 1e-2))
    start = time.process_time()
    fast = learn(load_program(model), {"input": data["X"]}, {"output": data["Y"]}, epochs=8, minibatch_size=32,
                 randomize_minibatches=True, seed=seed, algorithm=native, backend="llvm")
    cpu = time.process_time() - start
    native_acc = float((np.asarray(run_program(fast.program, {"input": data["X_test"]})["output"]).argmax(-1)
                        == data["y_test"]).mean())
    print(f"backend llvm: accuracy on the test set {100 * native_acc:.2f}% in {cpu:.2f} s CPU with compiling (or "
          f"loading the code compiled before), {fast.seconds:.3f} s of it training")
    assert accuracy[-1] >= 0.9 and same == 1.0 and native_acc >= 0.9, (accuracy, same, native_acc)
    print("OK")


def save_boundary(program: Any, data: Dict[str, np.ndarray], path: Path) -> None:
    """The decision boundary over [-2.5, 2.5] x [-2, 2] (96 x 96 points, the tutorial's grid) with the test set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mdfbridge import run_program

    gx, gy = np.meshgrid(np.linspace(-2.5, 2.5, 96), np.linspace(-2.0, 2.0, 96))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    label = np.asarray(run_program(program, {"input": grid})["output"]).argmax(-1).reshape(gx.shape)
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.contourf(gx, gy, label, alpha=0.3, cmap="viridis")
    ax.scatter(data["X_test"][:, 0], data["X_test"][:, 1], c=data["y_test"], cmap="viridis", edgecolor="k", s=12)
    ax.set_title("two moons: predictive coding on mdfbridge (test set)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
