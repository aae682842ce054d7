"""The topology as a picture: streams, mirrors, sources, consumers and buckets.

One mechanism for every input: a graph is built from *entries*, each an address, its
JetStream API config (as jsops sends it, or as the server returns it) and a status
(the planned action, ``live`` for what only the server has, or None). So the manifests
(``jsops graph``), the live state (``jsops graph --live``) and a plan's changes (the
diagram in the markdown plan) all draw the same way.

Edges follow the data: origin -> stream for ``mirror`` and ``sources`` (an origin in
another JetStream domain or API prefix is drawn in that domain's group), stream ->
consumer. Resources in another account than the environment's are grouped by account.
A bucket's stream (``KV_<bucket>``, ``OBJ_<bucket>``) is drawn as the bucket.

Renderers: :func:`to_mermaid` (GitHub renders it in markdown) and :func:`to_dot`
(Graphviz). No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.buckets import BUCKETS, stream_address
from reconciler.models import Address, Kind

if TYPE_CHECKING:
    from reconciler.plan import Change

# kind -> (mermaid shape open, close, Graphviz shape)
SHAPES: dict[Kind, tuple[str, str, str]] = {
    Kind.STREAM: ('[("', '")]', "cylinder"),
    Kind.CONSUMER: ('(["', '"])', "box"),
    Kind.KEY_VALUE: ('[["', '"]]', "box3d"),
    Kind.OBJECT_STORE: ('[["', '"]]', "box3d"),
}
_DEFAULT_SHAPE = ('["', '"]', "box")

# status -> (mermaid classDef style, Graphviz attributes)
STYLES = {
    "create": ("fill:#dafbe1,stroke:#1a7f37", 'color="#1a7f37", style=filled, fillcolor="#dafbe1"'),
    "update": ("fill:#fff8c5,stroke:#9a6700", 'color="#9a6700", style=filled, fillcolor="#fff8c5"'),
    "replace": (
        "fill:#fbefff,stroke:#8250df",
        'color="#8250df", style=filled, fillcolor="#fbefff"',
    ),
    "delete": ("fill:#ffebe9,stroke:#cf222e", 'color="#cf222e", style=filled, fillcolor="#ffebe9"'),
    "live": ("stroke-dasharray:4 3", "style=dashed"),
    "external": ("stroke-dasharray:4 3", "style=dashed"),
}


@dataclass(frozen=True, slots=True)
class Node:
    """One box: ``key`` is unique in its graph; ``group`` is "" for the environment's
    own account, else ``account X``, ``domain X`` or ``api X``."""

    key: str
    label: str
    kind: Kind
    group: str = ""
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    label: str = ""


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[Edge, None] = field(default_factory=dict)  # ordered, without duplicates

    def add(self, node: Node) -> str:
        known = self.nodes.get(node.key)
        if known is None or (known.status in (None, "external") and node.status):
            self.nodes[node.key] = node
        return node.key

    def connect(self, src: str, dst: str, label: str = "") -> None:
        self.edges.setdefault(Edge(src, dst, label))


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource to draw: its address, its API config (None when unknown, e.g. a
    planned delete) and its status."""

    address: Address
    config: dict[str, Any] | None = None
    status: str | None = None


def _group(account: str | None) -> str:
    return f"account {account}" if account else ""


def _where(api: str) -> str:
    parts = api.split(".")
    if len(parts) == 3 and parts[0] == "$JS" and parts[2] == "API":
        return f"domain {parts[1]}"
    return f"api {api}"


def _display(name: str) -> tuple[Kind, str]:
    """(kind, name) a stream is drawn as: a bucket's stream is its bucket."""
    for bucket in BUCKETS.values():
        if name.startswith(bucket.prefix) and len(name) > len(bucket.prefix):
            return bucket.kind, name[len(bucket.prefix) :]
    return Kind.STREAM, name


def _stream_key(group: str, name: str) -> str:
    return f"{group}|stream|{name}"


def _stream_name(address: Address) -> str:
    return stream_address(address).name


def _origins(config: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    """(origin stream, external api or None, "mirror" | "source") of a stream config."""
    out = []
    mirror = config.get("mirror")
    sources = [("mirror", mirror)] if mirror else []
    sources += [("source", s) for s in config.get("sources") or []]
    for label, src in sources:
        if not isinstance(src, dict) or not src.get("name"):
            continue
        external = src.get("external") or {}
        api = external.get("api") or None
        if api is None and src.get("domain"):
            api = f"$JS.{src['domain']}.API"
        out.append((src["name"], api, label))
    return out


def build_graph(entries: Iterable[Entry]) -> Graph:
    """The graph of ``entries`` (see the module docstring)."""
    graph = Graph()
    entries = list(entries)
    for entry in entries:  # every declared node first, so references find them
        address = entry.address
        if address.kind == Kind.ACCOUNT:
            continue
        group = _group(address.account)
        if address.kind == Kind.CONSUMER:
            key = f"{group}|consumer|{address.stream}/{address.name}"
            graph.add(Node(key, f"Consumer {address.name}", Kind.CONSUMER, group, entry.status))
            continue
        kind, name = _display(_stream_name(address))
        key = _stream_key(group, _stream_name(address))
        graph.add(Node(key, f"{kind} {name}", kind, group, entry.status))
    for entry in entries:
        address = entry.address
        group = _group(address.account)
        if address.kind == Kind.ACCOUNT:
            continue
        if address.kind == Kind.CONSUMER:
            stream_key = _stream_key(group, address.stream or "")
            kind, name = _display(address.stream or "")
            graph.add(Node(stream_key, f"{kind} {name}", kind, group))
            graph.connect(stream_key, f"{group}|consumer|{address.stream}/{address.name}")
            continue
        key = _stream_key(group, _stream_name(address))
        for origin, api, label in _origins(entry.config or {}):
            origin_group = _where(api) if api else group
            origin_key = _stream_key(origin_group, origin)
            kind, name = _display(origin)
            status = "external" if api else None
            graph.add(Node(origin_key, f"{kind} {name}", kind, origin_group, status))
            graph.connect(origin_key, key, label)
    return graph


def subgraph(graph: Graph, keys: Iterable[str]) -> Graph:
    """``keys`` and their direct neighbours, with the edges among them."""
    wanted = set(keys)
    near = set(wanted)
    for edge in graph.edges:
        if edge.src in wanted or edge.dst in wanted:
            near.update((edge.src, edge.dst))
    return Graph(
        {k: n for k, n in graph.nodes.items() if k in near},
        {e: None for e in graph.edges if e.src in near and e.dst in near},
    )


# ---------------------------------------------------------------- renderers


def _ids(graph: Graph) -> dict[str, str]:
    return {key: f"n{i}" for i, key in enumerate(graph.nodes)}


def _groups(graph: Graph) -> dict[str, list[Node]]:
    groups: dict[str, list[Node]] = {}
    for node in graph.nodes.values():
        groups.setdefault(node.group, []).append(node)
    return dict(sorted(groups.items()))


_MERMAID_PLAIN = re.compile(r"[^A-Za-z0-9 _.,:/()\[\]+=-]")


def _mermaid_text(text: str) -> str:
    """A label as Mermaid entity codes (``#34;``) but for plain characters: a name from
    a server or a pull request can then neither end its quoted label, its ``|edge|``,
    nor (by a newline and a fence) the diagram's code block in the PR comment."""
    return _MERMAID_PLAIN.sub(lambda m: f"#{ord(m.group())};", text)


def to_mermaid(graph: Graph) -> str:
    """A Mermaid ``flowchart`` (no fences)."""
    ids = _ids(graph)
    lines = ["flowchart LR"]
    for index, (group, nodes) in enumerate(_groups(graph).items()):
        indent = "  "
        if group:
            lines.append(f'  subgraph g{index}["{_mermaid_text(group)}"]')
            indent = "    "
        for node in nodes:
            open_, close, _ = SHAPES.get(node.kind, _DEFAULT_SHAPE)
            lines.append(f"{indent}{ids[node.key]}{open_}{_mermaid_text(node.label)}{close}")
        if group:
            lines.append("  end")
    for edge in graph.edges:
        arrow = f"-->|{_mermaid_text(edge.label)}|" if edge.label else "-->"
        lines.append(f"  {ids[edge.src]} {arrow} {ids[edge.dst]}")
    used = sorted({n.status for n in graph.nodes.values() if n.status and n.status in STYLES})
    for status in used:
        lines.append(f"  classDef {status} {STYLES[status][0]}")
        members = ",".join(ids[n.key] for n in graph.nodes.values() if n.status == status)
        lines.append(f"  class {members} {status}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph) -> str:
    """A Graphviz ``digraph``."""
    ids = _ids(graph)
    lines = ["digraph jsops {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for index, (group, nodes) in enumerate(_groups(graph).items()):
        indent = "  "
        if group:
            lines.append(f"  subgraph cluster_{index} {{")
            lines.append(f"    label={_dot_text(group)};")
            indent = "    "
        for node in nodes:
            attrs = [
                f"label={_dot_text(node.label)}",
                f"shape={SHAPES.get(node.kind, _DEFAULT_SHAPE)[2]}",
            ]
            if node.status in STYLES:
                attrs.append(STYLES[node.status][1])
            lines.append(f"{indent}{ids[node.key]} [{', '.join(attrs)}];")
        if group:
            lines.append("  }")
    for edge in graph.edges:
        label = f" [label={_dot_text(edge.label)}]" if edge.label else ""
        lines.append(f"  {ids[edge.src]} -> {ids[edge.dst]}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


RENDERERS = {"mermaid": to_mermaid, "dot": to_dot}


# ---------------------------------------------------------------- a plan's changes


def plan_graph(changes: Sequence[Change], max_nodes: int) -> tuple[Graph, int]:
    """The graph of what ``changes`` touch (with the unchanged resources next to them),
    at most ``max_nodes`` boxes: returns it and how many changes it leaves out.

    When not all fit, the changes in a mirror/source relation are drawn first (that is
    what a reviewer cannot see in a table), then the others in plan order.
    """
    entries = [Entry(c.address, c.send, c.action.value) for c in changes]
    full = build_graph(entries)
    changed = [k for k, n in full.nodes.items() if n.status not in (None, "external")]
    linked = {e.src for e in full.edges if e.label} | {e.dst for e in full.edges if e.label}
    order = [k for k in changed if k in linked] + [k for k in changed if k not in linked]
    neighbours: dict[str, set[str]] = {}
    for edge in full.edges:
        neighbours.setdefault(edge.src, set()).add(edge.dst)
        neighbours.setdefault(edge.dst, set()).add(edge.src)
    chosen: list[str] = []
    drawn: set[str] = set()
    for key in order:
        more = {key} | neighbours.get(key, set())
        if len(drawn | more) > max_nodes:
            break
        chosen.append(key)
        drawn |= more
    return subgraph(full, chosen), len(changed) - len(chosen)
