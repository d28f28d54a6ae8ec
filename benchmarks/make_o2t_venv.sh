#!/usr/bin/env bash
# A separate virtual environment with onnx2torch for benchmarks/bench_zoo.py's "o2t" column (onnx2torch is not a
# dependency of mdfbridge). torchvision does not load beside the CPU torch, so a stub package provides only the
# names onnx2torch imports from it (torchvision.ops.nms / box_convert / roi_align), raising NotImplementedError:
# only onnx2torch's NonMaxSuppression and RoiAlign converters call them.
# Usage: benchmarks/make_o2t_venv.sh [VENV]   (default /work/o2t-venv; bench_zoo.py --o2t-python VENV/bin/python)
set -euo pipefail
VENV=${1:-/work/o2t-venv}
TORCH=${TORCH_VERSION:-2.13.0}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==$TORCH" onnx onnx2torch numpy onnxruntime
"$VENV/bin/pip" uninstall -y -q torchvision || true
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SITE/torchvision/ops"
cat > "$SITE/torchvision/__init__.py" <<'PY'
"""Stub torchvision for onnx2torch beside the CPU torch (the real wheel does not load here): only the names
onnx2torch imports exist; calling them raises NotImplementedError (its NMS and RoiAlign converters only)."""
from . import ops  # noqa: F401

__version__ = "0.0.0-stub"
PY
cat > "$SITE/torchvision/ops/__init__.py" <<'PY'
"""Stub torchvision.ops: the functions onnx2torch's NonMaxSuppression and RoiAlign converters call."""


def _missing(name):
    def f(*args, **kwargs):
        raise NotImplementedError(f"torchvision.ops.{name} is a stub (torchvision is not installable here)")
    f.__name__ = name
    return f


nms = _missing("nms")
batched_nms = _missing("batched_nms")
box_convert = _missing("box_convert")
roi_align = _missing("roi_align")
PY
"$VENV/bin/python" -c "import onnx2torch, torchvision; print('onnx2torch', onnx2torch.__name__, 'ok; torchvision', torchvision.__version__)"
