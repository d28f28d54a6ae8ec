"""Lowering's plug-ins: block lowerings, which run a group of MDF nodes as ops of their own.

Lowering knows no kind of block. Each registered block lowering (`register_block_lowering`) is asked once per
graph which nodes it fuses (`plan(lowering)` -> `BlockPlan`), and for every node which of its parameters
metadata marks learnable (`learnable_parameters(node)`) and at which rate (`learning_rate(node, pid)`); None
means "not mine". A fused block's entry node is lowered as usual; right after it lowering calls the block's
`emit(lowering)`, which appends the block's ops and binds its output ports; the block's other nodes are not
lowered one by one. Block lowerings register themselves when imported (mdfbridge's own: `mdfbridge.gru_lowering`,
imported by the package).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Protocol, Sequence, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from .lowering import Lowering


@dataclass(frozen=True)
class FusedBlock:
    """Nodes one block lowering runs as ops of its own: `entry` is lowered as usual and then `emit(lowering)`
    runs; `members` (the block's other nodes) are not lowered one by one."""

    name: str
    entry: str
    members: FrozenSet[str]
    emit: Callable[["Lowering"], None]


@dataclass(frozen=True)
class BlockPlan:
    """What a block lowering does with one graph: the blocks it fuses, and whether the graph is a sequence
    program (inputs (trials, time steps, ...), whole-sequence ops)."""

    blocks: Tuple[FusedBlock, ...] = ()
    sequence: bool = False


class BlockLowering(Protocol):
    """A lowering plug-in (see the module docstring)."""

    def plan(self, lowering: "Lowering") -> BlockPlan:
        """The blocks of the lowering's graph this plug-in fuses (it reads `lowering.nodes`, `fuse_blocks`)."""
        ...

    def learnable_parameters(self, node: Mapping[str, Any]) -> Optional[Sequence[str]]:
        """Parameters of `node` its metadata marks learnable, or None when the node is not this plug-in's."""
        ...

    def learning_rate(self, node: Mapping[str, Any], pid: str) -> Optional[float]:
        """A per-parameter learning rate of `node`'s parameter `pid` from its metadata, or None."""
        ...


_BLOCK_LOWERINGS: List[BlockLowering] = []


def register_block_lowering(plugin: BlockLowering) -> BlockLowering:
    """Add a block lowering (once); returns it."""
    if plugin not in _BLOCK_LOWERINGS:
        _BLOCK_LOWERINGS.append(plugin)
    return plugin


def unregister_block_lowering(plugin: BlockLowering) -> None:
    """Remove a block lowering (lowering then treats its blocks' nodes as plain nodes)."""
    if plugin in _BLOCK_LOWERINGS:
        _BLOCK_LOWERINGS.remove(plugin)


def block_lowerings() -> Tuple[BlockLowering, ...]:
    """The registered block lowerings, in registration order."""
    return tuple(_BLOCK_LOWERINGS)


def mdf_meta(obj: Mapping[str, Any]) -> Dict[str, Any]:
    """`metadata.mdfbridge` of a document entry (where mdfbridge and its plug-ins keep what they write)."""
    return (obj.get("metadata") or {}).get("mdfbridge") or {}
