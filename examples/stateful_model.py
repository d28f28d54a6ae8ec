"""A stateful MDF model: parameters with a `time_derivative`, integrated by Euler steps of `dt` (modeci-mdf's
semantics: step 1 gives the initial state, each further step advances by dt; parameters update in document order,
each seeing the ones before it anew). The document holds a leaky integrator population (3 cells,
dv/dt = (I - v) / tau) and a FitzHugh-Nagumo cell; mdfbridge's numpy reference and torch backend are compared with
a hand-written Euler loop, and the integrator with its analytic solution I (1 - exp(-t / tau)).

    python examples/stateful_model.py [--out DIR]   (writes neurons.mdf.json)
"""
from __future__ import annotations

import sys

import numpy as np
from example_paths import output_dir

from mdfbridge import load_program, run_program, save_mdf
from mdfbridge.backends import get_backend

TAU, A, B, TAU_W = 0.5, 0.7, 0.8, 12.5
DOC = {"neurons": {"format": "ModECI MDF v0.4", "graphs": {"neurons": {"nodes": {
    "leak": {"input_ports": {"I": {"shape": [3]}},
             "parameters": {"tau": {"value": TAU},
                            "v": {"default_initial_value": 0.0, "time_derivative": "(I - v) / tau"}},
             "output_ports": {"v": {"value": "v"}}},
    "fn": {"input_ports": {"I": {"shape": [1]}},
           "parameters": {"a": {"value": A}, "b": {"value": B}, "tau_w": {"value": TAU_W},
                          "V": {"default_initial_value": -1.0, "time_derivative": "V - V**3 / 3 - W + I"},
                          "W": {"default_initial_value": 0.0, "time_derivative": "(V + a - b * W) / tau_w"}},
           "output_ports": {"V": {"value": "V"}, "W": {"value": "W"}}}}}}}}


def euler(I_leak: np.ndarray, I_fn: float, steps: int, dt: float) -> dict:
    """The same model written as a numpy loop: steps - 1 Euler updates (W sees the V of this step, as in MDF)."""
    v, V, W = np.zeros_like(I_leak), -1.0, 0.0
    Vs = [V]
    for _ in range(steps - 1):
        v = v + dt * (I_leak - v) / TAU
        V = V + dt * (V - V ** 3 / 3 - W + I_fn)
        W = W + dt * (V + A - B * W) / TAU_W
        Vs.append(V)
    return {"leak": v, "fn.V": V, "fn.W": W, "V trajectory": np.array(Vs)}


def main() -> int:
    out = output_dir(__doc__.splitlines()[0])
    path = out / "neurons.mdf.json"
    save_mdf(DOC, path)
    prog = load_program(path)
    print(f"{path.name}: inputs {list(prog.inputs)}, outputs {list(prog.outputs)}, states {list(prog.states)}")
    I_leak, I_fn = np.array([[0.5, 1.0, 2.0]]), 0.5
    inputs = {"leak": I_leak, "fn": np.array([[I_fn]])}
    ok = True
    for steps, dt in ((2001, 0.05), (20001, 0.005)):
        ref = run_program(prog, inputs, steps=steps, dt=dt, record=True)
        torch_out = get_backend("torch").prepare(prog).run(inputs, steps=steps, dt=dt)
        want = euler(I_leak[0], I_fn, steps, dt)
        t = (steps - 1) * dt
        d_loop = max(float(np.max(np.abs(ref[k][0] - want[k]))) for k in ("leak", "fn.V", "fn.W"))
        d_torch = max(float(np.max(np.abs(torch_out[k] - ref[k]))) for k in ("leak", "fn.V", "fn.W"))
        d_traj = float(np.max(np.abs(ref["__trajectory__"]["fn.V"][:, 0, 0] - want["V trajectory"])))
        traj = ref["__trajectory__"]["fn.V"][:, 0, 0]
        spikes = int(np.sum((traj[1:-1] > traj[:-2]) & (traj[1:-1] >= traj[2:]) & (traj[1:-1] > 1.0)))
        v_half = ref["__trajectory__"]["leak"][int(round(0.5 / dt)), 0]  # step k is time (k - 1) dt
        exact_half = I_leak[0] * (1 - np.exp(-0.5 / TAU))
        print(f"dt {dt}, {steps} steps (t = {t:g}): FitzHugh-Nagumo {spikes} spikes, V = {ref['fn.V'][0, 0]:.6f}; "
              f"leak v(0.5) = {np.round(v_half, 5).tolist()}, analytic {np.round(exact_half, 5).tolist()} "
              f"(max diff {np.max(np.abs(v_half - exact_half)):.1e}, Euler's O(dt))")
        print(f"   max |numpy reference - Euler loop| = {max(d_loop, d_traj):.1e} (whole V trajectory too), "
              f"max |torch backend - numpy reference| = {d_torch:.1e}")
        analytic = I_leak[0] * (1 - np.exp(-t / TAU))
        ok = ok and d_loop < 1e-12 and d_traj < 1e-12 and d_torch < 1e-12 and np.allclose(ref["leak"][0], analytic)
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
