"""torch.nn.Module -> MDF, traced with `torch.fx.symbolic_trace` (`torch.export.export` when fx cannot trace the
module; never TorchScript), weights kept, and the way back to the module's own `state_dict`.

Layout (the composition exporter's, `mdfbridge.exporters.mdf`): each `nn.Linear` becomes a projection node
`<path>_weight` holding W^T as its (in x out) `matrix` (`MatMul(A=input, B=matrix)`, role projection, learnable),
a bias node `<path>_bias_node` (value [1.0]) with a bias projection `<path>_bias` holding b as a (1 x out)
`matrix`, and a node `<path>` summing the two. Every weight's place in the document is then one Parameter, so
write-back and `learn()` work unchanged; each projection node records the torch key it came from
(`metadata.mdfbridge.torch_key`, `transpose`, `torch_shape`) so `program_state_dict` rebuilds a state_dict the
original module loads with `strict=True`. Activations are MDF standard functions (`Relu`, `logistic`, `tanh`) or
mdfbridge's value forms (`ReLU` with a leak, `SoftMax`). Recurrent layers: an `nn.GRU` that is batch_first, one
layer, without an initial state argument and of which only the output sequence is used is a GRU block
(`mdfbridge.gru_mdf`, gate form by default, a sequence program modeci-mdf's engine steps); any other `nn.GRU`,
and every `nn.RNN` (tanh, relu) and `nn.LSTM`, is one node per stacked layer running the GRU / RNN / LSTM op over
each trial's whole sequence (X (T, I) per trial, torch-layout weights as learnable parameters recorded under
`metadata.mdfbridge.torch_params`), with output ports `output` (the sequence), `h_n` (and `c_n`, computed only
where used); h_n / c_n are stacked per trial as (num_layers, H), and the initial state may be a module input. A
bidirectional layer's node also runs the op on `x[::-1]` with the `_reverse` weights (ports `h_n_reverse`,
`c_n_reverse`), its `output` both directions' sequences side by side (T, 2H), h_n / c_n (2 num_layers, H) in
torch's order.
MDF's trial axis is torch's batch axis: where that is not axis 0 of a torch tensor (batch_first=False data, h0,
h_n, c_n: axis 1), graph metadata `batch_axes` names the input/output and the axis. Graph inputs are nodes named
after the fx placeholders; outputs are nodes named after the fx output (`output`, or `output_<i>` for tuples,
`output_1_0` for nested ones such as an LSTM's (output, (h_n, c_n))). A recurrent layer given as the module itself
is traced as one layer call. Shape ops on batch-first tensors (torch.cat, transpose, permute keeping the batch
first, flatten from dim 1, mean over per-trial dims, view/reshape whose first size is the batch: `x.size(0)`,
`x.shape[0]` or -1) are expression nodes (`Builder.expression`); one that would move or merge the batch axis is
refused. nn.MultiheadAttention is one `MultiheadAttention` node holding its weights in torch's layout; the
nn.Transformer family (encoder and decoder layers and stacks) is that node plus their submodules' own conversions.

Modules: `values` (what converters see), `builder` (the MDF nodes and edges the converters write), `registry`
(converters keyed by torch callables / nn.Module classes), `converters` (one per layer / function / method /
aten op; `layer_converters`: Conv1d/2d/3d, LayerNorm and GELU, whose nodes hold their weights in torch's
layout; `activation_converters`: ELU, SELU, Hardsigmoid, Softplus, PReLU, LogSoftmax and Embedding;
`attention_converters`: MultiheadAttention and the Transformer family),
`tracing` (torch.fx, torch.export fallback), `convert` (the graph walk, `module_to_mdf`) and `state_dict`
(weights back to the module). A converter is registered for the torch callables it stands for (onnx2torch style),
so the graph walk stays generic:

    @add_converter(nn.Tanh, torch.tanh, torch.Tensor.tanh, aten("tanh.default"))
    def _tanh(b: Builder, call: Call) -> MDFTensor: ...
"""
from __future__ import annotations

from .convert import module_to_mdf, module_to_program
from .registry import supported_layers
from .state_dict import program_state_dict, save_state_dict

__all__ = ["module_to_mdf", "module_to_program", "program_state_dict", "save_state_dict", "supported_layers"]
