"""An `onnx.backend.base.Backend` that runs ONNX models through mdfbridge: ONNX -> MDF (importers/onnx.py) ->
`Program` -> the numpy reference interpreter (engine 'numpy') or the Program's torch module (engine 'torch').

It exists so that onnx's backend node test suite (`onnx.backend.test.loader.load_model_tests(kind="node")`)
can check mdfbridge's importer and executors against onnx's expected outputs (tests/test_onnx_conformance.py).

Frame: models are imported with `batch_axis=False` by default, so every ONNX tensor is one trial's value (node
tests have no trial axis); `run` adds the trial axis of length 1 and takes it off again.

Run-time constants: MDF values are floats, and mdfbridge reads some op inputs as constants (Gemm's B and C,
Clip's bounds, BatchNormalization's statistics, ...: the `constant_inputs` of the ops' ONNX import entries).
Graph inputs in those places, and every graph input that is not a float tensor (shapes, axes, exponents), are
bound as initializers when `run` receives their values; the model is imported once per distinct set of bound
values (cached). A model none of whose graph inputs would stay an input (all of them integer data, say) is refused
with UnsupportedError: binding them would leave nothing for mdfbridge to compute.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from ..errors import DataError, UnsupportedError
from ..program import Program
from .onnx import constant_input_positions

log = logging.getLogger(__name__)

ENGINES = ("numpy", "torch")
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}

def constant_inputs(model: onnx.ModelProto) -> Set[str]:
    """Graph inputs to bind as initializers at run time (non-float ones and those the importer reads as
    constants)."""
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    tensors = [i for i in graph_inputs if i.type.WhichOneof("value") == "tensor_type"]
    names = {i.name for i in tensors if i.type.tensor_type.elem_type not in _FLOAT_TYPES}
    dynamic = {i.name for i in tensors}
    for node in model.graph.node:
        for pos in constant_input_positions(node.op_type):
            if pos < len(node.input) and node.input[pos] in dynamic:
                names.add(node.input[pos])
    return names


def _type_name(value_info: onnx.ValueInfoProto) -> str:
    """'float', 'int8', ... of a tensor graph input ('sequence', 'optional', ... otherwise)."""
    kind = value_info.type.WhichOneof("value") or "?"
    if kind != "tensor_type":
        return kind.replace("_type", "")
    return TensorProto.DataType.Name(value_info.type.tensor_type.elem_type).lower()


def _with_initializers(model: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` where the named graph inputs are initializers holding `values`."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for name, value in values.items():
        out.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return out


def _array(value: Any) -> np.ndarray:
    """A numpy array from an array-like or a TensorProto (onnx's test data holds types numpy lacks as protos)."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return np.asarray(value)


class MdfBridgeBackendRep(BackendRep):
    """A prepared model: `run(inputs)` returns the outputs in the graph's output order."""

    def __init__(self, model: onnx.ModelProto, engine: str = "numpy", batch_axis: bool = False) -> None:
        if engine not in ENGINES:
            raise DataError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.model = model
        self.engine = engine
        self.batch_axis = batch_axis
        inits = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in inits]
        self.outputs = list(model.graph.output)
        self.bound = constant_inputs(model)
        if self.input_names and set(self.input_names) <= self.bound:
            kinds = {i.name: _type_name(i) for i in model.graph.input if i.name in self.input_names}
            raise UnsupportedError(f"graph inputs {kinds}: none would stay an input of the MDF model (mdfbridge "
                                   "values are floats; other element types are only read as constants such as "
                                   "shapes, axes and exponents)")
        self._programs: Dict[str, Tuple[Program, Any]] = {}
        if not self.bound:
            self.program(model)

    def program(self, model: onnx.ModelProto, key: str = "") -> Tuple[Program, Any]:
        """(Program, torch module or None) of `model`, imported and lowered once per `key`."""
        cached = self._programs.get(key)
        if cached is None:
            from ..lowering import lower
            from .onnx import onnx_to_mdf

            prog = lower(onnx_to_mdf(model, batch_axis=self.batch_axis))
            log.debug("imported ONNX graph '%s' (%d ops) for the %s engine", model.graph.name, len(prog.ops),
                      self.engine)
            module = None
            if self.engine == "torch":
                from .torch_module import program_to_module

                module = program_to_module(prog)
            cached = self._programs[key] = (prog, module)
        return cached

    def programs(self) -> List[Tuple[Program, Any]]:
        """The (Program, torch module or None) pairs imported so far (one per set of bound input values)."""
        return list(self._programs.values())

    def feeds(self, inputs: Union[Sequence[Any], Mapping[str, Any]]) -> Dict[str, np.ndarray]:
        """Input name -> array, from a list in graph-input order or a mapping."""
        if isinstance(inputs, Mapping):
            feeds = {k: _array(v) for k, v in inputs.items()}
        else:
            if len(inputs) > len(self.input_names):
                raise DataError(f"{len(inputs)} inputs given; the model takes {len(self.input_names)}: "
                                f"{self.input_names}")
            feeds = {k: _array(v) for k, v in zip(self.input_names, inputs)}
        missing = [k for k in self.input_names if k not in feeds]
        if missing:
            raise DataError(f"no value for input(s) {missing}")
        return feeds

    def run(self, inputs: Any, **kwargs: Any) -> Tuple[np.ndarray, ...]:
        """Run the model through mdfbridge; outputs in graph order, cast to their declared element types."""
        feeds = self.feeds(inputs)
        bound = {k: feeds.pop(k) for k in sorted(self.bound)}
        key = ""
        model = self.model
        if bound:
            h = hashlib.sha256()
            for k, v in bound.items():
                h.update(repr((k, v.dtype.str, v.shape)).encode())
                h.update(np.ascontiguousarray(v).tobytes())
            key = h.hexdigest()
            if key not in self._programs:
                model = _with_initializers(self.model, bound)
        prog, module = self.program(model, key)
        meta = (prog.metadata.get("graph_metadata") or {}).get("onnx") or {}
        by_onnx = {onnx_name: nid for nid, onnx_name in (meta.get("inputs") or {}).items()}
        lead = () if self.batch_axis else (None,)
        named = {by_onnx.get(k, k): np.asarray(v, dtype=float)[lead] for k, v in feeds.items()}
        if self.engine == "numpy":
            from .reference import run_program

            res = run_program(prog, named)
        else:
            import torch

            with torch.no_grad():
                out = module({k: torch.tensor(v, dtype=torch.float64) for k, v in named.items()})
            res = {k: v.detach().cpu().numpy() for k, v in out.items()}
        by_name = {onnx_name: nid for nid, onnx_name in (meta.get("outputs") or {}).items()}
        results = []
        for out_info in self.outputs:
            value = np.asarray(res[by_name.get(out_info.name, out_info.name)])
            if not self.batch_axis:
                value = value[0]
            elem = out_info.type.tensor_type.elem_type if out_info.type.WhichOneof("value") == "tensor_type" else 0
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem) if elem in _FLOAT_TYPES else value.dtype
            results.append(value.astype(dtype))
        return tuple(results)


class MdfBridgeBackend(Backend):
    """onnx's Backend interface over mdfbridge (CPU; engine 'numpy' or 'torch' via `prepare(..., engine=)`)."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        """Any model may be tried; unsupported ops raise UnsupportedError at prepare time."""
        return True

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> MdfBridgeBackendRep:
        """Import (and, when no input must be bound as a constant, lower) the model."""
        super().prepare(model, device, **kwargs)
        return MdfBridgeBackendRep(model, engine=kwargs.get("engine", "numpy"),
                                   batch_axis=bool(kwargs.get("batch_axis", False)))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
                  ) -> Tuple[np.ndarray, ...]:
        """prepare + run."""
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU", outputs_info: Any = None,
                 **kwargs: Any) -> Optional[Tuple[np.ndarray, ...]]:
        """Not offered: a node needs the shapes and types of a graph around it."""
        raise NotImplementedError("MdfBridgeBackend runs whole models; wrap the node in a graph")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """CPU only."""
        return Device(device).type == DeviceType.CPU


class MdfBridgeTorchBackend(MdfBridgeBackend):
    """The same backend running the Program through its torch module (float64)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> MdfBridgeBackendRep:
        """As MdfBridgeBackend.prepare with engine='torch'."""
        return super().prepare(model, device, **{**kwargs, "engine": "torch"})


prepare = MdfBridgeBackend.prepare
run_model = MdfBridgeBackend.run_model
supports_device = MdfBridgeBackend.supports_device
