"""Where a stream actor goes: the alive node with the least stream load per CPU.

Kept free of Ray so the rule is testable on its own: the coordinator passes what `ray.nodes()` says
and how many streams it has put where. A node that just lost an actor is *suspect* (the cluster may not
have declared it dead yet, which takes its health check several seconds) and is avoided while any
other node is available.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    cpus: float
    gpus: float = 0.0
    address: str = ""


def alive_nodes(ray_nodes: Iterable[Mapping[str, Any]]) -> list[NodeInfo]:
    """The alive nodes with CPUs, from `ray.nodes()` rows."""
    out = []
    for n in ray_nodes:
        res = n.get("Resources") or {}
        if n.get("Alive") and res.get("CPU", 0) > 0:
            out.append(
                NodeInfo(
                    str(n["NodeID"]),
                    float(res["CPU"]),
                    float(res.get("GPU", 0.0)),
                    str(n.get("NodeManagerAddress", "")),
                )
            )
    return out


def pick_node(
    nodes: list[NodeInfo],
    streams_on: Mapping[str, int],
    suspect: Iterable[str] = (),
    avoid: str | None = None,
) -> NodeInfo | None:
    """The node for the next stream: fewest streams per CPU (ties: fewer streams, then node id).

    Nodes that are suspect (lost an actor recently) are used only if nothing else is left; `avoid` (the
    node a restarted stream ran on) only if nothing but suspects is left besides it.
    """
    bad = set(suspect)
    pool = (
        [n for n in nodes if n.node_id not in bad and n.node_id != avoid]
        or [n for n in nodes if n.node_id not in bad]
        or list(nodes)
    )
    if not pool:
        return None
    return min(
        pool,
        key=lambda n: (
            streams_on.get(n.node_id, 0) / max(n.cpus, 1e-9),
            streams_on.get(n.node_id, 0),
            n.node_id,
        ),
    )
