"""Run an ONNX model (a file, bytes, a `ModelProto`, or a `Program` exported on the fly) on onnxruntime.

`DeploymentSession` picks the execution provider (CUDA first when onnxruntime offers it, then CPU), creates
the inference session once, reports which provider actually runs, casts inputs to the model's input types,
and uses IO binding on CUDA so inputs are copied once and outputs land in host memory in one step.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import DataError, UnsupportedError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PROVIDER_CHOICES = ("auto", "cpu", "cuda")

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def available_providers() -> List[str]:
    """onnxruntime's available execution providers, in its order."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(provider: str = "auto", available: Optional[Sequence[str]] = None) -> List[str]:
    """The provider list for a session: 'auto' -> CUDA (if available) then CPU; 'cuda' needs CUDA; 'cpu'.

    provider: 'auto', 'cuda' or 'cpu' (any case; onnxruntime's 'CUDAExecutionProvider' / 'CPUExecutionProvider'
    too; default 'auto'); available: the providers to choose from (default None: onnxruntime's
    `available_providers()`). Another provider, or 'cuda' where CUDA is not available, raises UnsupportedError."""
    key = str(provider).lower().replace("executionprovider", "")
    if key not in PROVIDER_CHOICES:
        raise UnsupportedError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {provider!r}")
    available = list(available) if available is not None else available_providers()
    if key == "cpu":
        return [CPU]
    if key == "cuda":
        if CUDA not in available:
            raise UnsupportedError(f"provider 'cuda' requested but onnxruntime offers no {CUDA} here "
                                   f"(available: {', '.join(available) or 'none'}); install onnxruntime-gpu with a "
                                   "matching CUDA, or use provider='cpu'")
        return [CUDA, CPU]
    return ([CUDA] if CUDA in available else []) + [CPU]


ModelLike = Union[str, "os.PathLike[str]", bytes, Any]


def _model_bytes(model: ModelLike, dtype: str) -> Union[str, bytes]:
    """What onnxruntime is given: a file path or bytes, checked by mdfbridge first (importers/onnx_safety.py:
    parses, external data inside the model's folder only, not empty, versions onnx knows, initializer data whole)."""
    from .importers.onnx_safety import load_model

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise DataError(f"no ONNX model at {path}")
        load_model(path)
        return path
    if isinstance(model, (bytes, bytearray)):
        load_model(bytes(model))
        return bytes(model)
    from .program import Program

    if isinstance(model, Program):
        from .exporters.onnx import program_to_onnx

        model = program_to_onnx(model, dtype=dtype, restore=False)  # (run with the Program's input names, batched)
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    raise DataError(f"cannot deploy a {type(model).__name__}; give an ONNX file, bytes, ModelProto or Program")


class DeploymentSession:
    """One onnxruntime inference session, created once and reused for every `run`.

    model_or_path: an ONNX file path (str or path-like), the serialised model (bytes), an `onnx.ModelProto`, or a
    mdfbridge Program (exported with `program_to_onnx` at `dtype`); provider: 'auto' (default: CUDA when
    onnxruntime offers it, then CPU), 'cuda' (refused when CUDA is not available, or when onnxruntime falls back to
    CPU) or 'cpu' (see `choose_providers`); dtype: the float type a Program is exported with, 'float32' (default)
    or 'float64' (ignored for ONNX models given as files, bytes or ModelProto); session_options: an
    `onnxruntime.SessionOptions` (default None: onnxruntime's defaults).

    Attributes: `provider` (the execution provider that actually runs, e.g. 'CPUExecutionProvider'), `requested`
    (the `provider` argument), `session` (the `onnxruntime.InferenceSession`), `output_names`.
    """

    def __init__(self, model_or_path: ModelLike, provider: str = "auto", *, dtype: str = "float32",
                 session_options: Any = None) -> None:
        import onnxruntime as ort

        from .importers.onnx_safety import wrap_onnxruntime

        self.requested = provider
        providers = choose_providers(provider)
        source = _model_bytes(model_or_path, dtype)
        self.where = source if isinstance(source, str) else "<model>"
        self.session = wrap_onnxruntime(
            lambda: ort.InferenceSession(source, sess_options=session_options, providers=providers), self.where,
            "loading it")
        self.provider: str = self.session.get_providers()[0]
        if str(provider).lower() == "cuda" and self.provider != CUDA:
            raise UnsupportedError(f"provider 'cuda' requested but onnxruntime fell back to {self.provider} "
                                   "(is a GPU visible and CUDA/cuDNN installed?)")
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._binding = self.provider == CUDA
        log.info("onnxruntime session on %s (requested %s; available %s)", self.provider, provider,
                 ", ".join(available_providers()))

    @property
    def input_names(self) -> List[str]:
        """Names of the model's inputs."""
        return list(self.inputs)

    def _prepare(self, inputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        unknown = set(inputs) - set(self.inputs)
        if unknown:
            raise DataError(f"unknown input(s) {sorted(unknown)}; the model's inputs are {self.input_names}")
        missing = [k for k in self.inputs if k not in inputs]
        if missing:
            raise DataError(f"no value for input(s) {missing}")
        feed: Dict[str, np.ndarray] = {}
        for name, meta in self.inputs.items():
            want = _ORT_TYPES.get(meta.type)
            arr = np.asarray(inputs[name])
            arr = np.asarray(arr, dtype=want, order="C")
            rank = len(meta.shape) if meta.shape is not None else None
            if rank is not None and arr.ndim == rank - 1:  # one trial without its batch axis
                arr = arr[None]
            if rank is not None and arr.ndim != rank:
                raise DataError(f"input '{name}' has shape {arr.shape}; the model expects {list(meta.shape)}")
            for got, dim in zip(arr.shape, meta.shape or ()):
                if isinstance(dim, int) and dim != got:
                    raise DataError(f"input '{name}' has shape {arr.shape}; the model expects {list(meta.shape)}")
            feed[name] = arr
        return feed

    def run(self, inputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Outputs (output name -> numpy array) for a batch of inputs.

        inputs: every model input's name -> array-like, cast to the model's input type; an array one axis short of
        the input's rank is read as one trial (the batch axis added). Unknown or missing inputs and shapes that do
        not fit raise DataError."""
        from .importers.onnx_safety import wrap_onnxruntime

        feed = self._prepare(inputs)
        if not self._binding:
            return dict(zip(self.output_names, wrap_onnxruntime(lambda: self.session.run(self.output_names, feed),
                                                                self.where, "running it")))
        binding = self.session.io_binding()
        for name, arr in feed.items():
            binding.bind_cpu_input(name, arr)
        for name in self.output_names:
            binding.bind_output(name, "cuda")
        wrap_onnxruntime(lambda: self.session.run_with_iobinding(binding), self.where, "running it")
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))

    def __repr__(self) -> str:
        return f"DeploymentSession(provider={self.provider!r}, inputs={self.input_names}, outputs={self.output_names})"


def deploy(model_or_path: ModelLike, provider: str = "auto", **kwargs: Any) -> DeploymentSession:
    """Shorthand for `DeploymentSession(model_or_path, provider, **kwargs)`: model_or_path an ONNX file, bytes,
    ModelProto or Program; provider 'auto' (default), 'cuda' or 'cpu'; kwargs: `DeploymentSession`'s keyword
    arguments (dtype, default 'float32'; session_options, default None)."""
    return DeploymentSession(model_or_path, provider, **kwargs)
