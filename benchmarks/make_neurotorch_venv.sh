#!/usr/bin/env bash
# A separate virtual environment with NeuroTorch 0.0.2 for benchmarks/bench_sequence_learning.py's side-by-side
# columns (NeuroTorch is not a dependency of mdfbridge). torch is pinned first (the CPU build: an unpinned install
# pulls a multi-GB CUDA build), NeuroTorch is installed without its dependencies and these are installed without
# torchvision, which does not load beside the CPU torch; a stub package gives the three names NeuroTorch imports
# from it (torchvision.transforms.Compose, Lambda, ToTensor).
# Usage: benchmarks/make_neurotorch_venv.sh [VENV]   (default /work/nt-venv; bench_sequence_learning.py
#        --neurotorch-python VENV/bin/python)
set -euo pipefail
VENV=${1:-/work/nt-venv}
TORCH=${TORCH_VERSION:-2.13.0}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==$TORCH"
"$VENV/bin/pip" install -q "numpy<2.0.0,>=1.22.3" "matplotlib>=3.5.2" "tqdm>=4.64.0" "scikit-learn>=1.1.1" \
  "psutil>=5.9.1" "scipy>=1.8.0" "six>=1.16.0" "pythonbasictools<0.0.2,>=0.0.1a11" \
  "importlib-metadata<9.0.0,>=8.7.0" "setuptools>=57.0.0"
"$VENV/bin/pip" install -q --no-deps neurotorch==0.0.2
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SITE/torchvision"
cat > "$SITE/torchvision/__init__.py" <<'PY'
"""Stub torchvision for NeuroTorch beside the CPU torch (the real wheel does not load here): the transforms
NeuroTorch imports (Compose, Lambda, ToTensor)."""
from . import transforms  # noqa: F401

__version__ = "0.0.0-stub"
PY
cat > "$SITE/torchvision/transforms.py" <<'PY'
"""Stub torchvision.transforms: Compose, Lambda, ToTensor (numpy arrays and numbers to tensors, as given)."""
import torch


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Lambda:
    def __init__(self, lambd):
        self.lambd = lambd

    def __call__(self, x):
        return self.lambd(x)


class ToTensor:
    def __call__(self, x):
        return torch.as_tensor(x)
PY
"$VENV/bin/python" -c "import torch, neurotorch; from neurotorch.learning_algorithms import BPTT, TBPTT, Eprop, RLS; print('neurotorch 0.0.2 ok; torch', torch.__version__)"
