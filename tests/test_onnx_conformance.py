"""Peer conformance (issue 6.4): onnx's backend node test suite through mdfbridge's ONNX backend.

Every node test (`onnx.backend.test.loader.load_model_tests(kind="node")`, built in memory once per module) whose
graph uses only ops of the importer's registry (`supported_onnx_ops()`, plus folded Constant nodes) runs through
`importers/onnx_backend.py`: ONNX -> MDF (`batch_axis=False`: node tests have no trial axis) -> Program -> the
numpy reference ('numpy') and the Program's torch module ('torch'), compared with onnx's expected outputs at
rtol 1e-5 / atol 1e-7 (tighter than onnx's runner's rtol 1e-3), shapes and element types equal. A case passes only
if mdfbridge computes its outputs (an output folded to a constant at import does not count). Exclusions are the
explicit lists in `EXCLUDED`, each under its reason; they run as strict xfails, so a fixed case must leave the
list. `test_conformance_summary` asserts the pass counts, records the per-op table below in the pytest report
(`record_property`, e.g. `--junitxml`), and checks that this table is current
(regenerate: `python tests/test_onnx_conformance.py --write-table`).

<!-- conformance table -->
    op                     cases  numpy  torch  excluded (reason: count)
    Abs                        1      1      1
    Acos                       2      2      2
    Add                        8      2      2  INTEGER: 6
    And                        8      0      0  INTEGER: 8
    Asin                       2      2      2
    Atan                       2      2      2
    AveragePool               20     19     19  ROUNDED: 1
    BatchNormalization         4      2      2  TRAINING: 2
    Cast                     116      0     16  FOLDED: 10, LOW_PRECISION: 90, NAN_INPUTS (numpy): 16
    Ceil                       2      2      2
    Clip                      12      9      9  INTEGER: 3
    Concat                    12     12     12
    Conv                       6      6      6
    ConvTranspose             11     11     11
    Cos                        2      2      2
    Cosh                       2      2      2
    Div                       10      3      3  INTEGER: 7
    Dropout                   12      4      4  DROPOUT_MASK: 5, TRAINING: 3
    Einsum                     9      9      9
    Elu                        3      3      3
    Equal                     10      0      0  INTEGER: 10
    Erf                        1      1      1
    Exp                        2      2      2
    Expand                     2      2      2
    Flatten                    9      9      9
    Floor                      2      2      2
    GRU                        6      6      6
    Gather                     4      4      4
    GatherElements             3      3      3
    Gelu                       4      4      4
    Gemm                      11     11     11
    GlobalAveragePool          2      2      2
    GlobalMaxPool              2      2      2
    Greater                    8      0      2  BOOL_RESULT (numpy): 2, INTEGER: 6
    GreaterOrEqual             8      0      2  BOOL_RESULT (numpy): 2, INTEGER: 6
    GroupNormalization         2      2      2
    HardSigmoid                3      3      3
    Identity                   5      2      2  INTEGER: 1, SEQUENCE: 2
    InstanceNormalization      2      2      2
    LRN                        2      2      2
    LSTM                       6      5      5  RECURRENT: 1
    LayerNormalization        19      0      0  NORM_STATS: 19
    LeakyRelu                  3      3      3
    Less                       8      0      2  BOOL_RESULT (numpy): 2, INTEGER: 6
    LessOrEqual                8      0      2  BOOL_RESULT (numpy): 2, INTEGER: 6
    Log                        2      2      2
    LogSoftmax                 7      7      7
    MatMul                     7      7      7
    Max                       14      6      6  INTEGER: 8
    MaxPool                   19     16     16  INTEGER: 1, POOL_INDICES: 2
    Mean                       3      3      3
    Min                       14      6      6  INTEGER: 8
    Mul                        9      3      3  INTEGER: 6
    Neg                        2      2      2
    Not                        3      0      0  INTEGER: 3
    Or                         8      0      0  INTEGER: 8
    PRelu                      2      2      2
    Pad                        6      3      3  INTEGER: 3
    Pow                       12      8      8  INTEGER: 4
    RNN                        6      6      6
    Reciprocal                 2      2      2
    ReduceMax                 11      8      8  EMPTY_REDUCE: 1, INTEGER: 2
    ReduceMean                 8      8      8
    ReduceMin                 10      8      8  EMPTY_REDUCE: 1, INTEGER: 1
    ReduceProd                 9      9      9
    ReduceSum                 12     12     12
    Relu                       1      1      1
    Reshape                   10     10     10
    Selu                       3      3      3
    Sigmoid                    2      2      2
    Sign                       1      1      1
    Sin                        2      2      2
    Sinh                       2      2      2
    Slice                      8      8      8
    Softmax                    7      7      7
    Softplus                   2      2      2
    Split                     16     16     16
    Sqrt                       2      2      2
    Squeeze                    2      2      2
    Sub                        9      3      3  INTEGER: 6
    Sum                        3      3      3
    Tan                        2      2      2
    Tanh                       2      2      2
    Tile                       2      2      2
    Transpose                  7      7      7
    Unsqueeze                  7      7      7
    Where                      2      1      1  INTEGER: 1
    (expanded functions)      99     81     85  BOOL_RESULT (numpy): 4, INTEGER: 14
    total                    733    444    472  289 excluded
    reasons:
      INTEGER: integer, bool or string tensors as data or results: mdfbridge values are floats (the node-test
        backend binds non-float graph inputs as constants, so a graph of only such inputs leaves nothing to
        compute; a non-float input read as a constant still gives a float result)
      TRAINING: training mode (random Dropout masks, BatchNormalization running statistics): mdfbridge imports
        inference graphs
      NAN_INPUTS: the inputs hold NaN and +-inf, which the numpy reference refuses ('contains NaN or infinite
        values'; the torch module runs them)
      LOW_PRECISION: float8 / float4 / int4 / int2 / e8m0 element types: mdfbridge values are float64 and these
        casts are refused
      FOLDED: the data input has a non-float type, so it is bound as a constant and the graph folds to a constant
        at import: nothing is left for mdfbridge to compute
      DROPOUT_MASK: Dropout's mask output is used (mdfbridge imports inference-mode Dropout as Identity, without a
        mask)
      SEQUENCE: sequence and optional types: mdfbridge values are float tensors
      EMPTY_REDUCE: ReduceMax/ReduceMin over an empty axis: ONNX defines -inf/+inf, numpy refuses a reduction with
        no identity
      NORM_STATS: LayerNormalization's Mean and InvStdDev outputs are used: mdfbridge imports one output per node
        (Y)
      RECURRENT: GRU/LSTM/RNN settings the recurrent ops do not implement, refused at import: sequence_lens,
        peepholes
      BOOL_RESULT: a comparison's bool result: the numpy reference returns graph outputs as float64 (0.0 and 1.0;
        the torch module keeps bools)
      POOL_INDICES: MaxPool's Indices output is used: mdfbridge imports one output per node (Y)
      ROUNDED: the expected outputs are written to 4 decimals (onnxruntime differs from them by 4.5e-5 too), over
        the 1e-5 tolerance
<!-- end of conformance table -->
"""
from __future__ import annotations

import functools
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from mdfbridge.executor import batched_tensors
from mdfbridge.importers.onnx import supported_onnx_ops
from mdfbridge.importers.onnx_backend import MdfBridgeBackend, MdfBridgeTorchBackend

RTOL, ATOL = 1e-5, 1e-7
MIN_PASSED = 370  # per engine (see the table above for the counts with the installed onnx)
ENGINES = {"numpy": MdfBridgeBackend, "torch": MdfBridgeTorchBackend}
EXPANDED = "(expanded functions)"  # multi-node test graphs (e.g. test_softmax_axis_0_expanded), all registry ops

INTEGER = ("integer, bool or string tensors as data or results: mdfbridge values are floats (the node-test backend "
           "binds non-float graph inputs as constants, so a graph of only such inputs leaves nothing to compute; a "
           "non-float input read as a constant still gives a float result)")
TRAINING = ("training mode (random Dropout masks, BatchNormalization running statistics): mdfbridge imports "
            "inference graphs")
NAN_INPUTS = ("the inputs hold NaN and +-inf, which the numpy reference refuses ('contains NaN or infinite values'; "
              "the torch module runs them)")
LOW_PRECISION = ("float8 / float4 / int4 / int2 / e8m0 element types: mdfbridge values are float64 and these casts "
                 "are refused")
FOLDED = ("the data input has a non-float type, so it is bound as a constant and the graph folds to a constant at "
          "import: nothing is left for mdfbridge to compute")
DROPOUT_MASK = "Dropout's mask output is used (mdfbridge imports inference-mode Dropout as Identity, without a mask)"
SEQUENCE = "sequence and optional types: mdfbridge values are float tensors"
EMPTY_REDUCE = ("ReduceMax/ReduceMin over an empty axis: ONNX defines -inf/+inf, numpy refuses a reduction with no "
                "identity")
NORM_STATS = ("LayerNormalization's Mean and InvStdDev outputs are used: mdfbridge imports one output per node "
              "(Y)")
RECURRENT = ("GRU/LSTM/RNN settings the recurrent ops do not implement, refused at import: sequence_lens, "
             "peepholes")
BOOL_RESULT = ("a comparison's bool result: the numpy reference returns graph outputs as float64 (0.0 and 1.0; the "
               "torch module keeps bools)")
POOL_INDICES = "MaxPool's Indices output is used: mdfbridge imports one output per node (Y)"
ROUNDED = ("the expected outputs are written to 4 decimals (onnxruntime differs from them by 4.5e-5 too), over the "
           "1e-5 tolerance")

# reason -> the node tests excluded for it (on every engine unless ONLY_ON names the engines)
EXCLUDED: Dict[str, Tuple[str, ...]] = {
    INTEGER: (
        "test_add_int16", "test_add_int8", "test_add_uint16", "test_add_uint32", "test_add_uint64",
        "test_add_uint8", "test_and2d", "test_and3d", "test_and4d", "test_and_bcast3v1d", "test_and_bcast3v2d",
        "test_and_bcast4v2d", "test_and_bcast4v3d", "test_and_bcast4v4d", "test_clip_default_int8_inbounds",
        "test_clip_default_int8_inbounds_expanded", "test_clip_default_int8_max",
        "test_clip_default_int8_max_expanded", "test_clip_default_int8_min", "test_clip_default_int8_min_expanded",
        "test_div_int16", "test_div_int32_trunc", "test_div_int8", "test_div_uint16", "test_div_uint32",
        "test_div_uint64", "test_div_uint8", "test_edge_pad", "test_equal", "test_equal_bcast", "test_equal_int16",
        "test_equal_int8", "test_equal_string", "test_equal_string_broadcast", "test_equal_uint16",
        "test_equal_uint32", "test_equal_uint64", "test_equal_uint8", "test_greater_equal_int16",
        "test_greater_equal_int16_expanded", "test_greater_equal_int8", "test_greater_equal_int8_expanded",
        "test_greater_equal_uint16", "test_greater_equal_uint16_expanded", "test_greater_equal_uint32",
        "test_greater_equal_uint32_expanded", "test_greater_equal_uint64", "test_greater_equal_uint64_expanded",
        "test_greater_equal_uint8", "test_greater_equal_uint8_expanded", "test_greater_int16", "test_greater_int8",
        "test_greater_uint16", "test_greater_uint32", "test_greater_uint64", "test_greater_uint8",
        "test_less_equal_int16", "test_less_equal_int16_expanded", "test_less_equal_int8",
        "test_less_equal_int8_expanded", "test_less_equal_uint16", "test_less_equal_uint16_expanded",
        "test_less_equal_uint32", "test_less_equal_uint32_expanded", "test_less_equal_uint64",
        "test_less_equal_uint64_expanded", "test_less_equal_uint8", "test_less_equal_uint8_expanded",
        "test_less_int16", "test_less_int8", "test_less_uint16", "test_less_uint32", "test_less_uint64",
        "test_less_uint8", "test_max_int16", "test_max_int32", "test_max_int64", "test_max_int8", "test_max_uint16",
        "test_max_uint32", "test_max_uint64", "test_max_uint8", "test_maxpool_2d_uint8", "test_min_int16",
        "test_min_int32", "test_min_int64", "test_min_int8", "test_min_uint16", "test_min_uint32", "test_min_uint64",
        "test_min_uint8", "test_mul_int16", "test_mul_int8", "test_mul_uint16", "test_mul_uint32", "test_mul_uint64",
        "test_mul_uint8", "test_not_2d", "test_not_3d", "test_not_4d", "test_or2d", "test_or3d", "test_or4d",
        "test_or_bcast3v1d", "test_or_bcast3v2d", "test_or_bcast4v2d", "test_or_bcast4v3d", "test_or_bcast4v4d",
        "test_reflect_pad", "test_wrap_pad",
        "test_pow_types_int32_float32", "test_pow_types_int32_int32", "test_pow_types_int64_float32",
        "test_pow_types_int64_int64", "test_reduce_max_bool_inputs", "test_reduce_max_empty_set_bool",
        "test_reduce_min_bool_inputs", "test_sub_int16", "test_sub_int8", "test_sub_uint16", "test_sub_uint32",
        "test_sub_uint64", "test_sub_uint8", "test_where_long_example",
    ),
    TRAINING: (
        "test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode", "test_training_dropout",
        "test_training_dropout_default", "test_training_dropout_zero_ratio",
    ),
    NAN_INPUTS: (
        "test_cast_BFLOAT16_to_FLOAT", "test_cast_DOUBLE_to_FLOAT", "test_cast_DOUBLE_to_FLOAT16",
        "test_cast_FLOAT16_to_DOUBLE", "test_cast_FLOAT16_to_FLOAT", "test_cast_FLOAT_to_BFLOAT16",
        "test_cast_FLOAT_to_DOUBLE", "test_cast_FLOAT_to_FLOAT16", "test_castlike_BFLOAT16_to_FLOAT_expanded",
        "test_castlike_DOUBLE_to_FLOAT16_expanded", "test_castlike_DOUBLE_to_FLOAT_expanded",
        "test_castlike_FLOAT16_to_DOUBLE_expanded", "test_castlike_FLOAT16_to_FLOAT_expanded",
        "test_castlike_FLOAT_to_BFLOAT16_expanded", "test_castlike_FLOAT_to_DOUBLE_expanded",
        "test_castlike_FLOAT_to_FLOAT16_expanded",
    ),
    LOW_PRECISION: (
        "test_cast_FLOAT16_to_FLOAT4E2M1", "test_cast_FLOAT16_to_FLOAT8E4M3FN",
        "test_cast_FLOAT16_to_FLOAT8E4M3FNUZ", "test_cast_FLOAT16_to_FLOAT8E5M2",
        "test_cast_FLOAT16_to_FLOAT8E5M2FNUZ", "test_cast_FLOAT16_to_INT2", "test_cast_FLOAT16_to_INT4",
        "test_cast_FLOAT16_to_UINT2", "test_cast_FLOAT16_to_UINT4", "test_cast_FLOAT4E2M1_to_FLOAT",
        "test_cast_FLOAT4E2M1_to_FLOAT16", "test_cast_FLOAT8E4M3FNUZ_to_FLOAT",
        "test_cast_FLOAT8E4M3FNUZ_to_FLOAT16", "test_cast_FLOAT8E4M3FN_to_FLOAT",
        "test_cast_FLOAT8E4M3FN_to_FLOAT16", "test_cast_FLOAT8E5M2FNUZ_to_FLOAT",
        "test_cast_FLOAT8E5M2FNUZ_to_FLOAT16", "test_cast_FLOAT8E5M2_to_FLOAT", "test_cast_FLOAT8E5M2_to_FLOAT16",
        "test_cast_FLOAT_to_FLOAT4E2M1", "test_cast_FLOAT_to_FLOAT8E4M3FN", "test_cast_FLOAT_to_FLOAT8E4M3FNUZ",
        "test_cast_FLOAT_to_FLOAT8E5M2", "test_cast_FLOAT_to_FLOAT8E5M2FNUZ", "test_cast_FLOAT_to_INT2",
        "test_cast_FLOAT_to_INT4", "test_cast_FLOAT_to_UINT2", "test_cast_FLOAT_to_UINT4",
        "test_cast_INT2_to_FLOAT", "test_cast_INT2_to_FLOAT16", "test_cast_INT2_to_INT8", "test_cast_INT4_to_FLOAT",
        "test_cast_INT4_to_FLOAT16", "test_cast_INT4_to_INT8", "test_cast_UINT2_to_FLOAT",
        "test_cast_UINT2_to_FLOAT16", "test_cast_UINT2_to_UINT8", "test_cast_UINT4_to_FLOAT",
        "test_cast_UINT4_to_FLOAT16", "test_cast_UINT4_to_UINT8", "test_cast_e8m0_FLOAT16_to_FLOAT8E8M0",
        "test_cast_e8m0_FLOAT8E8M0_to_FLOAT", "test_cast_e8m0_FLOAT8E8M0_to_FLOAT16",
        "test_cast_e8m0_FLOAT_to_FLOAT8E8M0", "test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FN",
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E4M3FNUZ", "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2",
        "test_cast_no_saturate_FLOAT16_to_FLOAT8E5M2FNUZ", "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FN",
        "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FNUZ", "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2",
        "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2FNUZ", "test_castlike_FLOAT16_to_FLOAT4E2M1_expanded",
        "test_castlike_FLOAT16_to_FLOAT8E4M3FNUZ_expanded", "test_castlike_FLOAT16_to_FLOAT8E4M3FN_expanded",
        "test_castlike_FLOAT16_to_FLOAT8E5M2FNUZ_expanded", "test_castlike_FLOAT16_to_FLOAT8E5M2_expanded",
        "test_castlike_FLOAT16_to_INT2_expanded", "test_castlike_FLOAT16_to_INT4_expanded",
        "test_castlike_FLOAT16_to_UINT2_expanded", "test_castlike_FLOAT16_to_UINT4_expanded",
        "test_castlike_FLOAT8E4M3FNUZ_to_FLOAT16_expanded", "test_castlike_FLOAT8E4M3FNUZ_to_FLOAT_expanded",
        "test_castlike_FLOAT8E4M3FN_to_FLOAT16_expanded", "test_castlike_FLOAT8E4M3FN_to_FLOAT_expanded",
        "test_castlike_FLOAT8E5M2FNUZ_to_FLOAT16_expanded", "test_castlike_FLOAT8E5M2FNUZ_to_FLOAT_expanded",
        "test_castlike_FLOAT8E5M2_to_FLOAT16_expanded", "test_castlike_FLOAT8E5M2_to_FLOAT_expanded",
        "test_castlike_FLOAT_to_FLOAT4E2M1_expanded", "test_castlike_FLOAT_to_FLOAT8E4M3FNUZ_expanded",
        "test_castlike_FLOAT_to_FLOAT8E4M3FN_expanded", "test_castlike_FLOAT_to_FLOAT8E5M2FNUZ_expanded",
        "test_castlike_FLOAT_to_FLOAT8E5M2_expanded", "test_castlike_FLOAT_to_INT2_expanded",
        "test_castlike_FLOAT_to_INT4_expanded", "test_castlike_FLOAT_to_UINT2_expanded",
        "test_castlike_FLOAT_to_UINT4_expanded", "test_castlike_INT2_to_INT8_expanded",
        "test_castlike_INT4_to_INT8_expanded", "test_castlike_UINT2_to_UINT8_expanded",
        "test_castlike_UINT4_to_UINT8_expanded", "test_castlike_no_saturate_FLOAT16_to_FLOAT8E4M3FNUZ_expanded",
        "test_castlike_no_saturate_FLOAT16_to_FLOAT8E4M3FN_expanded",
        "test_castlike_no_saturate_FLOAT16_to_FLOAT8E5M2FNUZ_expanded",
        "test_castlike_no_saturate_FLOAT16_to_FLOAT8E5M2_expanded",
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E4M3FNUZ_expanded",
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E4M3FN_expanded",
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E5M2FNUZ_expanded",
        "test_castlike_no_saturate_FLOAT_to_FLOAT8E5M2_expanded",
    ),
    FOLDED: (
        "test_castlike_FLOAT4E2M1_to_FLOAT16_expanded", "test_castlike_FLOAT4E2M1_to_FLOAT_expanded",
        "test_castlike_INT2_to_FLOAT16_expanded", "test_castlike_INT2_to_FLOAT_expanded",
        "test_castlike_INT4_to_FLOAT16_expanded", "test_castlike_INT4_to_FLOAT_expanded",
        "test_castlike_UINT2_to_FLOAT16_expanded", "test_castlike_UINT2_to_FLOAT_expanded",
        "test_castlike_UINT4_to_FLOAT16_expanded", "test_castlike_UINT4_to_FLOAT_expanded",
    ),
    DROPOUT_MASK: (
        "test_dropout_default_mask", "test_dropout_default_mask_ratio", "test_training_dropout_default_mask",
        "test_training_dropout_mask", "test_training_dropout_zero_ratio_mask",
    ),
    SEQUENCE: (
        "test_identity_opt", "test_identity_sequence",
    ),
    EMPTY_REDUCE: (
        "test_reduce_max_empty_set", "test_reduce_min_empty_set",
    ),
    NORM_STATS: (
        "test_layer_normalization_2d_axis0", "test_layer_normalization_2d_axis1",
        "test_layer_normalization_2d_axis_negative_1", "test_layer_normalization_2d_axis_negative_2",
        "test_layer_normalization_3d_axis0_epsilon", "test_layer_normalization_3d_axis1_epsilon",
        "test_layer_normalization_3d_axis2_epsilon", "test_layer_normalization_3d_axis_negative_1_epsilon",
        "test_layer_normalization_3d_axis_negative_2_epsilon", "test_layer_normalization_3d_axis_negative_3_epsilon",
        "test_layer_normalization_4d_axis0", "test_layer_normalization_4d_axis1", "test_layer_normalization_4d_axis2",
        "test_layer_normalization_4d_axis3", "test_layer_normalization_4d_axis_negative_1",
        "test_layer_normalization_4d_axis_negative_2", "test_layer_normalization_4d_axis_negative_3",
        "test_layer_normalization_4d_axis_negative_4", "test_layer_normalization_default_axis",
    ),
    RECURRENT: (
        "test_lstm_with_peepholes",
    ),
    BOOL_RESULT: (
        "test_greater", "test_greater_bcast", "test_greater_equal", "test_greater_equal_bcast",
        "test_greater_equal_bcast_expanded", "test_greater_equal_expanded", "test_less", "test_less_bcast",
        "test_less_equal", "test_less_equal_bcast", "test_less_equal_bcast_expanded",
        "test_less_equal_expanded",
    ),
    POOL_INDICES: (
        "test_maxpool_with_argmax_2d_precomputed_pads", "test_maxpool_with_argmax_2d_precomputed_strides",
    ),
    ROUNDED: (
        "test_averagepool_2d_ceil_last_window_starts_on_pad",
    ),
}
ONLY_ON: Dict[str, Tuple[str, ...]] = {NAN_INPUTS: ("numpy",), BOOL_RESULT: ("numpy",)}
EXCLUDED_REASON: Dict[str, str] = {name: reason for reason, names in EXCLUDED.items() for name in names}


def excluded(engine: str, name: str) -> Optional[str]:
    """The reason a case is excluded on `engine`, or None."""
    reason = EXCLUDED_REASON.get(name)
    return reason if reason is not None and engine in ONLY_ON.get(reason, (engine,)) else None


# --------------------------------------------------------------------------- the cases

@functools.lru_cache(maxsize=1)
def node_cases() -> Dict[str, Any]:
    """Name -> onnx TestCase of every node test whose ops are all in the importer's registry (loaded once)."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():  # the case generators overflow casts on purpose
        warnings.simplefilter("ignore")
        tests = load_model_tests(kind="node")
    ops = set(supported_onnx_ops())
    out = {}
    for tc in tests:
        types = [n.op_type for n in tc.model.graph.node]
        if all(t in ops or t == "Constant" for t in types) and any(t in ops for t in types):
            out[tc.name] = tc
    return out


def op_of(tc: Any) -> str:
    """The op a case tests: its node's op type, or EXPANDED for a multi-node (function body) graph."""
    types = [n.op_type for n in tc.model.graph.node if n.op_type != "Constant"]
    return types[0] if len(tc.model.graph.node) == 1 else EXPANDED


def _array(v: Any) -> np.ndarray:
    return numpy_helper.to_array(v) if isinstance(v, TensorProto) else np.asarray(v)


def run_case(tc: Any, engine: str) -> None:
    """Prepare and run every data set of a case; AssertionError/MdfBridgeError when it does not conform."""
    rep = ENGINES[engine].prepare(tc.model, "CPU")
    for inputs, expected in tc.data_sets:
        got = rep.run(list(inputs))
        assert len(got) == len(expected)
        for g, w, info in zip(got, expected, tc.model.graph.output):
            w = _array(w)
            assert g.shape == w.shape, f"output '{info.name}': shape {g.shape}, expected {w.shape}"
            assert g.dtype == w.dtype, f"output '{info.name}': dtype {g.dtype}, expected {w.dtype}"
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=RTOL, atol=ATOL,
                                       err_msg=f"output '{info.name}'")
    for prog, _ in rep.programs():
        batched = batched_tensors(prog)
        folded = [k for k, t in prog.outputs.items() if t not in batched]
        assert not folded, f"outputs {folded} were folded to constants at import"


@functools.lru_cache(maxsize=None)
def outcome(engine: str, name: str) -> Optional[str]:
    """None when the case conforms on `engine`, else the first line of why not (cached: the summary reuses it)."""
    try:
        with np.errstate(all="ignore"):
            run_case(node_cases()[name], engine)
    except Exception as exc:  # noqa: BLE001 - any failure is a non-conforming case
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]
    return None


def _params() -> List[Any]:
    params = []
    for engine in ENGINES:
        for name in node_cases():
            reason = excluded(engine, name)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(engine, name, marks=marks, id=f"{engine}-{name}"))
    return params


@pytest.mark.parametrize("engine,name", _params())
def test_node_case(engine: str, name: str) -> None:
    why = outcome(engine, name)
    assert why is None, why


# --------------------------------------------------------------------------- the summary

def summary() -> Tuple[Dict[str, Dict[str, Any]], Dict[str, int]]:
    """Per op: cases, passed per engine, excluded per reason; and the total passed per engine."""
    rows: Dict[str, Dict[str, Any]] = {}
    totals: Counter = Counter()
    for name, tc in node_cases().items():
        row = rows.setdefault(op_of(tc), {"cases": 0, **{e: 0 for e in ENGINES}, "excluded": Counter()})
        row["cases"] += 1
        for engine in ENGINES:
            if outcome(engine, name) is None:
                row[engine] += 1
                totals[engine] += 1
        if name in EXCLUDED_REASON:
            reason = EXCLUDED_REASON[name]
            row["excluded"][_short(reason) + (f" ({', '.join(ONLY_ON[reason])})" if reason in ONLY_ON else "")] += 1
    return dict(sorted(rows.items(), key=lambda kv: (kv[0] == EXPANDED, kv[0]))), dict(totals)


def _short(reason: str) -> str:
    return next(k for k, v in globals().items() if v == reason and k.isupper() and k != "EXCLUDED")


def table() -> str:
    """The per-op summary as a text table (what the module docstring shows)."""
    rows, totals = summary()
    lines = [f"{'op':<22}{'cases':>6}{'numpy':>7}{'torch':>7}  excluded (reason: count)"]
    for op, r in rows.items():
        excl = ", ".join(f"{k}: {v}" for k, v in sorted(r["excluded"].items()))
        lines.append(f"{op:<22}{r['cases']:>6}{r['numpy']:>7}{r['torch']:>7}  {excl}".rstrip())
    n = sum(r["cases"] for r in rows.values())
    lines.append(f"{'total':<22}{n:>6}{totals.get('numpy', 0):>7}{totals.get('torch', 0):>7}  "
                 f"{sum(len(v) for v in EXCLUDED.values())} excluded")
    lines.append("reasons:")
    for r in EXCLUDED:
        lines.extend(textwrap.wrap(f"{_short(r)}: {r}", width=110, initial_indent="  ", subsequent_indent="    ",
                                   break_on_hyphens=False))
    return "\n".join(lines)


_MARKERS = ("<!-- conformance table -->\n", "<!-- end of conformance table -->")


def documented_table() -> str:
    """The table written in this module's docstring."""
    doc = __doc__ or ""
    start, end = doc.index(_MARKERS[0]) + len(_MARKERS[0]), doc.index(_MARKERS[1])
    return "\n".join(line[4:] if line.startswith("    ") else line for line in doc[start:end].splitlines())


def test_conformance_summary(record_property: Any) -> None:
    rows, totals = summary()
    text = table()
    record_property("onnx_node_tests_in_scope", len(node_cases()))
    for engine in ENGINES:
        record_property(f"onnx_node_tests_passed_{engine}", totals.get(engine, 0))
    record_property("onnx_conformance_table", text)
    for engine in ENGINES:
        assert totals.get(engine, 0) >= MIN_PASSED, f"{engine}: {totals.get(engine, 0)} node tests pass"
        unexpected = {n: outcome(engine, n) for n in node_cases() if (outcome(engine, n) is None) ==
                      (excluded(engine, n) is not None)}
        assert not unexpected, f"{engine}: outcomes that disagree with EXCLUDED: {unexpected}"
    assert set(rows) >= set(supported_onnx_ops()), "registry ops without node tests"
    assert documented_table().strip() == text.strip(), \
        "the table in the module docstring is stale: run python tests/test_onnx_conformance.py --write-table"


def test_exclusions_name_cases_in_scope() -> None:
    stale = sorted(set(EXCLUDED_REASON) - set(node_cases()))
    assert not stale, f"EXCLUDED names cases that are not in scope: {stale}"


def test_backend_interface() -> None:
    assert MdfBridgeBackend.supports_device("CPU") and not MdfBridgeBackend.supports_device("CUDA")
    tc = node_cases()["test_gemm_all_attributes"]
    inputs, expected = tc.data_sets[0]
    got = MdfBridgeBackend.run_model(tc.model, list(inputs))
    np.testing.assert_allclose(got[0], expected[0], rtol=RTOL, atol=ATOL)
    rep = MdfBridgeBackend.prepare(tc.model)
    names = rep.input_names
    np.testing.assert_allclose(rep.run(dict(zip(names, inputs)))[0], expected[0], rtol=RTOL, atol=ATOL)


def _write_table() -> None:
    """Rewrite the table in this module's docstring from the current outcomes."""
    path = Path(__file__)
    src = path.read_text()
    start = src.index(_MARKERS[0]) + len(_MARKERS[0])
    end = src.index(_MARKERS[1])
    body = "".join(f"    {line}\n".replace("    \n", "\n") for line in table().splitlines())
    path.write_text(src[:start] + body + src[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-table"]:
        _write_table()
    else:
        sys.stdout.write(table() + "\n")
