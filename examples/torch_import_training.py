"""A torch.nn.Module imported as MDF (module_to_mdf) and trained by mdfbridge: the trained weights, written back
into the MDF file, equal training the torch module itself; program_state_dict gives them back to the module.
Then mdfbridge.to_torch(doc) as an ordinary nn.Module in a plain torch training loop, written back to MDF too.

    python examples/torch_import_training.py [--out DIR]   (writes net.mdf.json, net.trained.mdf.json,
                                                           net.loop.mdf.json)
"""
from __future__ import annotations

import copy
import sys

import numpy as np
import torch
from example_paths import output_dir
from torch import nn

import mdfbridge
from mdfbridge import learn, load_program, run_program, save_mdf, write_back
from mdfbridge.importers.pytorch import module_to_mdf, program_state_dict

EPOCHS, BATCH, LR = 30, 8, 0.01


class Net(nn.Module):
    """3 -> 16 (tanh) -> 8 (relu) -> 1."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(3, 16), nn.Tanh())
        self.fc = nn.Linear(16, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(self.hidden(x))))


def torch_training(module: nn.Module, X: np.ndarray, Y: np.ndarray) -> nn.Module:
    """learn()'s loop in torch: adam, mse per minibatch of BATCH in order, EPOCHS epochs."""
    opt = torch.optim.Adam(module.parameters(), lr=LR)
    x, y = torch.as_tensor(X), torch.as_tensor(Y)
    for _ in range(EPOCHS):
        for s in range(0, len(X), BATCH):
            loss = nn.functional.mse_loss(module(x[s:s + BATCH]), y[s:s + BATCH])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return module


def max_state_diff(a: nn.Module, b: nn.Module) -> float:
    sb = b.state_dict()
    return max(float((v - sb[k]).abs().max()) for k, v in a.state_dict().items())


def main() -> int:
    out = output_dir(__doc__.splitlines()[0])
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (64, 3))
    Y = np.sin(2 * X[:, :1]) + X[:, 1:2] * X[:, 2:3]
    net = Net().double()
    original = copy.deepcopy(net)

    path = out / "net.mdf.json"
    save_mdf(module_to_mdf(net, (torch.as_tensor(X[:4]),)), path)
    prog = load_program(path)
    (inp,), (outp,) = prog.inputs, prog.outputs  # named after forward's argument and fx's output: 'x', 'output'
    start = run_program(prog, {inp: X})[outp]
    with torch.no_grad():
        err = float(np.max(np.abs(start - net(torch.as_tensor(X)).numpy())))
    print(f"1. module_to_mdf(Net) -> {path.name}: {len(prog.ops)} ops, inputs {list(prog.inputs)}, outputs "
          f"{list(prog.outputs)}, {len(prog.learnable_params())} learnable arrays")
    print(f"   max |MDF - torch| before training = {err:.1e}")

    result = learn(path, {inp: X}, {outp: Y}, epochs=EPOCHS, learning_rate=LR, optimizer_type="adam",
                   minibatch_size=BATCH)
    trained_path = out / "net.trained.mdf.json"
    write_back(path, result.program, trained_path)
    print(f"2. learn() on the MDF file: loss {result.epoch_losses[0]:.4f} -> {result.epoch_losses[-1]:.4f} "
          f"({result.seconds:.2f} s); wrote the weights back into {trained_path.name}")

    direct = torch_training(copy.deepcopy(original), X, Y)
    loaded = copy.deepcopy(original)
    loaded.load_state_dict(program_state_dict(load_program(trained_path)), strict=True)
    diff = max_state_diff(loaded, direct)
    print(f"3. max |trained MDF weights (as Net's state_dict) - Net trained directly in torch| = {diff:.1e}")

    module = mdfbridge.to_torch(path)  # a plain nn.Module: positional forward, parameters() for any optimizer
    torch_training(module, X, Y)  # the same plain torch loop as for Net itself
    loop_path = out / "net.loop.mdf.json"
    write_back(path, module, loop_path)
    with torch.no_grad():
        diff_loop = float(np.max(np.abs(run_program(load_program(loop_path), {inp: X})[outp]
                                        - direct(torch.as_tensor(X)).numpy())))
    print(f"4. to_torch(MDF) in a plain torch loop, written back to {loop_path.name}: max |its outputs - "
          f"Net trained directly| = {diff_loop:.1e}")
    ok = err < 1e-12 and diff < 1e-10 and diff_loop < 1e-10 and result.epoch_losses[-1] < result.epoch_losses[0] / 3
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
