"""The recorded graph: what ``model.forward`` asked the WebGPU backend to do.

The backend's ops do not compute: each appends a :class:`Node` and returns a
:class:`GTensor` (a lazy [rows, cols] float32 activation).  ``to_numpy`` ends
the recording; the planner (``planner.py``) turns the nodes into dispatches
once, and the plan is replayed for every step with the same shape.

Positions and token ids are not baked into the graph: kernels read them
from the session's Step and IDS buffers, so one decode plan serves every
position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Storage:
    """The memory behind one or more tensors (views share it); a buffer once planned."""

    nbytes: int
    buffer: Any = None
    label: str = ""


@dataclass(eq=False)
class GTensor:
    """A lazy float32 activation [rows, cols] at ``offset`` (elements) with ``stride`` between rows."""

    rows: int
    cols: int
    node: "Node | None" = None
    storage: Storage | None = None
    offset: int = 0
    stride: int = 0

    def __post_init__(self) -> None:
        if not self.stride:
            self.stride = self.cols

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)


@dataclass(eq=False)
class Node:
    op: str                       # embed, rmsnorm, linear, rope, attention, swiglu, add, last_rows
    inputs: list[Any]             # GTensors and weights/caches, op-specific
    attrs: dict = field(default_factory=dict)
    out: GTensor | None = None
    index: int = 0


@dataclass
class Graph:
    nodes: list[Node]
    output: GTensor
    n_tokens: int
    pos0: int
    ids: list[int]

    def consumers(self) -> dict[int, list[Node]]:
        """id(GTensor) -> the nodes that read it."""
        users: dict[int, list[Node]] = {}
        for n in self.nodes:
            for x in n.inputs:
                if isinstance(x, GTensor):
                    users.setdefault(id(x), []).append(n)
        return users
