#!/usr/bin/env bash
# A separate virtual environment with pcx 0.6.3 (the predictive-coding library for JAX, formerly pcax) for
# benchmarks/pcx_two_moons.py, which reproduces pcx's two-moons tutorial as a reference for mdfbridge's predictive
# coding (pcx is not a dependency of mdfbridge). CPU only: jax[cpu] pulls plain jax/jaxlib wheels and no CUDA
# plugin; jax is pinned inside pcx 0.6.3's own range (>=0.4.33,<0.5), as are equinox (<0.12) and optax (<0.3).
# scikit-learn gives make_moons.
# Usage: benchmarks/make_pcx_venv.sh [VENV]   (default /work/pcx-venv; then
#        VENV/bin/python benchmarks/pcx_two_moons.py --seeds 0 1 2 3 4)
set -euo pipefail
VENV=${1:-/work/pcx-venv}
JAX=${JAX_VERSION:-0.4.38}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "jax[cpu]==$JAX" "equinox>=0.11.7,<0.12.0" "optax>=0.2.3,<0.3.0" numpy scikit-learn
"$VENV/bin/pip" install -q pcx==0.6.3
"$VENV/bin/python" -c "import jax, jaxlib, equinox, optax, numpy, sklearn, pcx; from importlib.metadata import version; print('pcx', version('pcx'), 'jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'equinox', equinox.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__, 'sklearn', sklearn.__version__, 'backend', jax.default_backend())"
