"""mdfbridge: models travel between compositions, ModECI MDF, PyTorch and ONNX."""
from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

from . import gru_lowering  # noqa: E402,F401  (a lowering plug-in: importing it registers it)
from .composition import (  # noqa: E402
    FULL_CONNECTIVITY_MATRIX,
    IDENTITY_MATRIX,
    RANDOM_CONNECTIVITY_MATRIX,
    AutodiffComposition,
    BiasMechanism,
    Composition,
    MappingProjection,
    NodeRole,
    ProcessingMechanism,
    TransferMechanism,
    composition_from_mdf,
    get_mdf_serialized,
    write_mdf_file,
)
from .errors import (  # noqa: E402
    CompositionError,
    CycleError,
    DataError,
    DocumentError,
    ExpressionError,
    MdfBridgeError,
    SchemaError,
    ShapeError,
    UnknownFunctionError,
    UnsupportedError,
)
from .gru_composition import GRUComposition  # noqa: E402
from .learning import ExecutionMode, Loss, learn  # noqa: E402
from .lowering import lower  # noqa: E402
from .program import Program  # noqa: E402
from .transfer import Exponential, Linear, Logistic, ReLU, SoftMax, Tanh  # noqa: E402


def __getattr__(name: str):  # lazy: keeps `import mdfbridge` light
    if name in ("load_mdf", "load_program", "run_mdf", "save_mdf", "to_torch"):
        from . import api

        return getattr(api, name)
    if name == "write_back":
        from .exporters.weights import write_back

        return write_back
    if name == "run_program":
        from .importers.reference import run_program

        return run_program
    raise AttributeError(name)


__all__ = [
    "AutodiffComposition", "BiasMechanism", "Composition", "MappingProjection", "TransferMechanism",
    "ProcessingMechanism", "NodeRole", "composition_from_mdf", "get_mdf_serialized", "write_mdf_file",
    "Linear", "Logistic", "Tanh", "ReLU", "SoftMax", "Exponential",
    "IDENTITY_MATRIX", "FULL_CONNECTIVITY_MATRIX", "RANDOM_CONNECTIVITY_MATRIX",
    "MdfBridgeError", "DocumentError", "SchemaError", "UnknownFunctionError", "UnsupportedError",
    "ShapeError", "CycleError", "ExpressionError", "DataError", "CompositionError",
    "GRUComposition", "ExecutionMode", "Loss", "learn", "write_back",
    "Program", "lower", "load_mdf", "load_program", "run_mdf", "save_mdf", "run_program", "to_torch",
]
