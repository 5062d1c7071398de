"""Pictures of counterexamples and of small state graphs, for people who read diagrams faster than
traces (issue 13, item 4).

A counterexample is drawn as a sequence diagram: one lane per actor of the trace (the admin thread,
the user task, each CPU in the fault handler, the kernel's asynchronous releases), one row per step
with the same words and the same changes as the text trace of model/render.py, the shared objects'
counts after each step in columns on the right (a count that changed is highlighted), and the step
that breaks the property in red. The same trace can be written as Mermaid text.

`devdax graph` draws every reachable state of a small configuration, by breadth-first depth, so
that a new reader sees the whole interleaving space at once. It refuses above GRAPH_LIMIT states:
past a few hundred nodes a drawing is no longer read, only scrolled.

The SVG is built as text (no drawing library): fixed-width fonts make the layout a matter of
counting characters, which keeps the output deterministic, so docs/pictures/ can be checked for
staleness byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from html import escape

from devdax.model.checker import CheckResult, Step, Violation
from devdax.model.reduction import reduced_successors
from devdax.model.render import diff, pack, step_call
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import state_invariants
from devdax.spec.state import State
from devdax.spec.symmetry import canonical
from devdax.spec.system import init
from devdax.spec.variants import VARIANTS

#: `devdax graph` refuses configurations with more reachable states than this (docs/pictures.md)
GRAPH_LIMIT = 300

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
CHAR = 0.61  # width of one character of FONT, in units of the font size
BIG, SMALL = 12, 11  # font sizes: the call of a step, the changes under it
PAD, NUM_W, COUNT_W = 16, 40, 62
RED, RED_BG, CHANGED_BG = "#c0392b", "#fde8e8", "#fff3bf"
ACTOR_COLOURS = {"admin": "#1f5fa8", "user": "#2e7d32", "cpu": "#d35400", "kernel": "#6d4c8d"}


def _w(text: str, size: int) -> float:
    return len(text) * size * CHAR


def _attrs(attrs: dict[str, str]) -> str:
    """Keyword arguments as SVG attributes: font_weight -> font-weight, class_ -> class."""
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{v}"' for k, v in attrs.items())


def _text(x: float, y: float, s: str, size: int = BIG, **attrs: str) -> str:
    """SVG collapses leading blanks: an indented continuation line is shifted instead."""
    body = s.lstrip(" ")
    x += _w(s[: len(s) - len(body)], size)
    extra = _attrs(attrs)
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}"{extra}>{escape(body)}</text>'


def _rect(x: float, y: float, w: float, h: float, **attrs: str) -> str:
    extra = _attrs(attrs)
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}"{extra}/>'


def _svg(width: float, height: float, body: Iterable[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{FONT}">'
    )
    return "\n".join([head, _rect(0, 0, width, height, fill="white"), *body, "</svg>"]) + "\n"


# ------------------------------------------------------------------------------ actors ----


def actor(st: Step) -> str:
    """The lane of a step: the first word of its call as model/render.py prints it (admin, user,
    cpuN, kernel); a call render.py prints without an actor is the kernel's."""
    first = step_call(st.action, st.args).split(" ", 1)[0]
    return first if first in ("admin", "user", "kernel") or re.fullmatch(r"cpu\d+", first) else "kernel"


def lanes(trace: Sequence[Step]) -> list[str]:
    """The actors of a trace, admin first, then the user task, the CPUs by number, the kernel."""
    order = {"admin": (0, 0), "user": (1, 0), "kernel": (3, 0)}
    names = {actor(st) for st in trace}
    return sorted(names, key=lambda n: order.get(n, (2, int(n[3:]) if n[3:].isdigit() else 0)))


def colour(name: str) -> str:
    return ACTOR_COLOURS["cpu" if name.startswith("cpu") else name if name in ACTOR_COLOURS else "kernel"]


# ------------------------------------------------------------------------------ counts ----


def _count_fields(s: State) -> dict[str, int]:
    """The shared objects' counts, as the state has them: per region its kref, per device its
    kobject counts (struct device, cdev, the v4.7 kref, the pseudo-fs inode), per file f_count,
    and the number of installed page-table entries."""
    out: dict[str, int] = {}
    for r, reg in enumerate(s.regions):
        out[f"region{r}\nkref"] = reg.kref
    for d, dev in enumerate(s.devs):
        for f in ("dev_ref", "cdev_ref", "kref", "inode_ref"):
            out[f"dax{d}\n{f}"] = getattr(dev, f)
    for i, fl in enumerate(s.files):
        out[f"file{i}\nf_count"] = fl.f_count
    out["ptes\ninstalled"] = len(s.entries)
    return out


def count_table(states: Sequence[State]) -> tuple[list[str], list[list[int]]]:
    """The count columns worth showing (non-zero somewhere in the trace) and their value per row."""
    rows = [_count_fields(s) for s in states]
    cols = [k for k in rows[0] if any(r.get(k, 0) for r in rows)]
    return cols, [[r.get(k, 0) for k in cols] for r in rows]


# ------------------------------------------------------------------------------- rows ----


@dataclass(frozen=True)
class Row:
    """One step of the picture: its number (0 for the --race initial state), its lane, the call as
    render.py prints it, and the changes it made."""

    n: int
    lane: str
    call: str
    changes: list[str]

    @property
    def call_lines(self) -> list[str]:
        """A fused fault step's call can be longer than a line: wrapped at spaces, as render.py wraps."""
        return pack(self.call, "", "    ", " ")


def rows_of(cfg: Config, trace: Sequence[Step]) -> tuple[list[Row], list[State]]:
    """The steps exactly as render_steps() prints them, and the states: the one before the first
    row, then the one after each row (--race gives the trace a step 0, from the empty system to
    the probed, opened and mapped one)."""
    c = Ctx.of(cfg)
    prev = canonical(init(c))
    rows: list[Row] = []
    states: list[State] = [prev]
    if cfg.race:
        empty = init(Ctx.of(replace(cfg, race=False)))
        states = [empty]
        changes = [x for d in diff(empty, prev, cfg.devices) for x in pack(d, "", "    ")]
        rows.append(
            Row(0, "", "initial state (--race: probed, opened and mapped by the spec's own steps)", changes)
        )
        states.append(prev)
    for n, st in enumerate(trace, start=1):
        changes = [x for d in diff(prev, st.state, cfg.devices) for x in pack(d, "", "    ")]
        rows.append(Row(n, actor(st), f"{step_call(st.action, st.args)}  -> {st.outcome}", changes))
        states.append(st.state)
        prev = st.state
    return rows, states


def title_lines(v: Violation, label: str) -> list[str]:
    inv = v.invariant
    return [f"{label}: {inv.name}", *pack(f"source: {inv.source}", "", "    ", " ")]


def breaking_lines(v: Violation) -> list[str]:
    what = {"step": "the last step breaks", "liveness": "from the last state on"}.get(
        v.invariant.kind, "fails in the last state"
    )
    return pack(f"{v.invariant.name} {what}: {v.message}", "", "    ", " ")


# ------------------------------------------------------------------------ sequence SVG ----


@dataclass(frozen=True)
class _Layout:
    """Where everything goes: lane centres, the text column, the count columns, row tops."""

    lane_x: dict[str, float]
    lane_w: float
    text_x: float
    count_x: float
    width: float
    top: float
    row_y: list[float]
    row_h: list[float]

    @staticmethod
    def of(names: list[str], rows: list[Row], heads: list[str], ncols: int, tail: list[str]) -> _Layout:
        lane_w = max([88.0] + [_w(n, BIG) + 20 for n in names])
        lane_x = {n: PAD + NUM_W + lane_w * (i + 0.5) for i, n in enumerate(names)}
        text_x = PAD + NUM_W + lane_w * len(names) + 14
        text_w = max(
            [_w(c, BIG) for r in rows for c in r.call_lines]
            + [_w(c, SMALL) + 12 for r in rows for c in r.changes]
            + [200.0]
        )
        count_x = text_x + text_w + 18
        width = max(count_x + COUNT_W * ncols + PAD, max(_w(t, 13) for t in heads + tail) + 2 * PAD)
        top = PAD + 20 * len(heads) + 44
        heights = [10.0 + 16 * len(r.call_lines) + 14 * len(r.changes) for r in rows]
        ys = [top + sum(heights[:i]) for i in range(len(rows))]
        return _Layout(lane_x, lane_w, text_x, count_x, width, top, ys, heights)


def _draw_header(lay: _Layout, heads: list[str], cols: list[str], bottom: float) -> list[str]:
    out = [
        _text(PAD, PAD + 14 + 20 * i, t, 13, font_weight="bold" if i == 0 else "normal")
        for i, t in enumerate(heads)
    ]
    y = lay.top - 34
    out.append(_text(PAD, y + 17, "step", SMALL, fill="#555"))
    for name, x in lay.lane_x.items():
        out.append(_rect(x - lay.lane_w / 2 + 6, y, lay.lane_w - 12, 24, rx="4", fill=colour(name)))
        out.append(_text(x, y + 16, name, BIG, fill="white", text_anchor="middle", font_weight="bold"))
        line = f'<line x1="{x:.1f}" y1="{y + 24:.1f}" x2="{x:.1f}" y2="{bottom:.1f}"'
        out.append(line + f' stroke="{colour(name)}" stroke-dasharray="4 3" class="lifeline"/>')
    out.append(_text(lay.text_x, y + 17, "call  -> outcome, then what changed", SMALL, fill="#555"))
    for i, col in enumerate(cols):
        obj, field = col.split("\n")
        cx = lay.count_x + COUNT_W * (i + 0.5)
        out.append(_text(cx, y + 5, obj, 10, text_anchor="middle", fill="#555"))
        out.append(_text(cx, y + 17, field, 10, text_anchor="middle", fill="#555"))
    return out


def _row_background(lay: _Layout, i: int, last: bool) -> str:
    """Drawn before the lifelines, so that they run through every row."""
    bg = RED_BG if last else ("#f6f6f6" if i % 2 else "white")
    attrs = {"stroke": RED, "stroke_width": "2", "class_": "breaking"} if last else {}
    return _rect(PAD / 2, lay.row_y[i], lay.width - PAD, lay.row_h[i], fill=bg, **attrs)


def _draw_row(lay: _Layout, i: int, row: Row, vals: list[int], prev: list[int], last: bool) -> list[str]:
    y = lay.row_y[i]
    out = [_text(PAD + NUM_W - 8, y + 17, f"{row.n}.", BIG, text_anchor="end", font_weight="bold")]
    if row.lane:
        x = lay.lane_x[row.lane]
        fill = RED if last else colour(row.lane)
        out.append(_rect(x - 9, y + 5, 18, 16, rx="3", fill=fill, class_=f"step lane-{row.lane}"))
        conn = f'<line x1="{x + 9:.1f}" y1="{y + 13:.1f}" x2="{lay.text_x - 4:.1f}" y2="{y + 13:.1f}"'
        out.append(conn + f' stroke="{fill}" stroke-width="1.2"/>')
    calls = row.call_lines
    ink = RED if last else "black"
    out += [
        _text(lay.text_x, y + 17 + 16 * k, c, BIG, font_weight="bold", fill=ink) for k, c in enumerate(calls)
    ]
    below = y + 15 + 16 * len(calls)
    out += [_text(lay.text_x + 12, below + 14 * k, c, SMALL, fill="#333") for k, c in enumerate(row.changes)]
    for k, v in enumerate(vals):
        cx = lay.count_x + COUNT_W * (k + 0.5)
        changed = prev[k] != v
        if changed:
            out.append(_rect(cx - COUNT_W / 2 + 6, y + 4, COUNT_W - 12, 18, rx="3", fill=CHANGED_BG))
        weight = "bold" if changed else "normal"
        out.append(_text(cx, y + 17, str(v), BIG, text_anchor="middle", font_weight=weight))
    return out


def sequence_svg(cfg: Config, v: Violation, label: str) -> str:
    """The counterexample v (found on cfg) as an SVG sequence diagram; label names the run."""
    rows, states = rows_of(cfg, v.trace)
    names = lanes(v.trace)
    cols, vals = count_table(states)
    heads, tail = title_lines(v, label), breaking_lines(v)
    lay = _Layout.of(names, rows, heads, len(cols), tail)
    bottom = lay.row_y[-1] + lay.row_h[-1]
    body = [_row_background(lay, i, i == len(rows) - 1) for i in range(len(rows))]
    body += _draw_header(lay, heads, cols, bottom)
    for i, row in enumerate(rows):
        body += _draw_row(lay, i, row, vals[i + 1], vals[i], i == len(rows) - 1)
    body += [
        _text(PAD, bottom + 22 + 17 * k, t, 13, fill=RED, font_weight="bold") for k, t in enumerate(tail)
    ]
    return _svg(lay.width, bottom + 22 + 17 * len(tail) + PAD, body)


# ---------------------------------------------------------------------------- Mermaid ----


def _mm(text: str) -> str:
    """Mermaid's sequence syntax ends a statement at ';' and reads '#' as an entity."""
    text = text.replace("#", "#35;").replace(";", "#59;").replace("->", "→")
    return text.replace("<", "#lt;").replace(">", "#gt;")


def sequence_mermaid(cfg: Config, v: Violation, label: str) -> str:
    """The same diagram as Mermaid text: a self-message per step in its actor's lane, the changes
    and the changed counts as a note, the breaking step in a red box."""
    rows, states = rows_of(cfg, v.trace)
    names = lanes(v.trace)
    cols, vals = count_table(states)
    out = ["sequenceDiagram", f"    title {_mm(' / '.join(title_lines(v, label)))}"]
    out += [f"    participant {n}" for n in names]
    for i, row in enumerate(rows):
        last = i == len(rows) - 1
        lane = row.lane or names[0]
        counts = [
            f"{c.replace(chr(10), ' ')} {vals[i][k]} -> {x}"
            for k, (c, x) in enumerate(zip(cols, vals[i + 1], strict=True))
            if vals[i][k] != x
        ]
        if last:
            out.append("    rect rgb(253, 232, 232)")
        out.append(f"    {lane}->>{lane}: {_mm(f'{row.n}. {row.call}')}")
        note = row.changes + (["counts: " + ", ".join(counts)] if counts else [])
        if note:
            out.append(f"    Note right of {lane}: {'<br/>'.join(_mm(x.strip()) for x in note)}")
        if last:
            out += [f"    Note over {names[0]},{names[-1]}: {_mm(' '.join(breaking_lines(v)))}", "    end"]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- choice ----


def chosen(res: CheckResult, variant: str | None, findings: Iterable[str] = ()) -> Violation | None:
    """The counterexample a picture shows: a variant's first caught property; otherwise the first
    violation the profile does not document; otherwise the first documented one."""
    if variant is not None:
        for name in VARIANTS[variant].breaks:
            if name in res.violations:
                return res.violations[name]
    known = set(findings)
    ordered = sorted(res.violations, key=lambda n: (n in known, n))
    return res.violations[ordered[0]] if ordered else None


def write_check_pictures(
    cfg: Config, res: CheckResult, variant: str | None, svg: str | None, mermaid: str | None
) -> str | None:
    """What `devdax check --svg/--mermaid` writes; returns a one-line problem, or None."""
    if svg is None and mermaid is None:
        return None
    v = chosen(res, variant, Ctx.of(cfg).prof.findings)
    if v is None:
        return "--svg/--mermaid: no counterexample to draw (nothing is violated); no file written"
    label = f"variant {variant}" if variant else f"profile {cfg.profile}"
    try:
        if svg is not None:
            with open(svg, "w") as f:
                f.write(sequence_svg(cfg, v, label))
        if mermaid is not None:
            with open(mermaid, "w") as f:
                f.write(sequence_mermaid(cfg, v, label))
    except OSError as exc:
        return f"--svg/--mermaid: cannot write {exc.filename}: {exc.strerror}"
    return None


# ------------------------------------------------------------------------------ graph ----


@dataclass
class StateGraph:
    """Every reachable (canonical) state by breadth-first number, its depth, the edges with the
    actor and call of each, and the states that break some state invariant."""

    states: list[State]
    depth: list[int]
    edges: list[tuple[int, int, str, str]]  # src, dst, lane, call -> outcome
    bad: dict[int, str]


def explore(cfg: Config, limit: int = GRAPH_LIMIT) -> StateGraph:
    """The reachable graph as `devdax check` explores it (symmetry and movers reduction on); raises
    ValueError past `limit` states."""
    c = Ctx.of(cfg)
    s0 = canonical(init(c))
    index = {s0: 0}
    g = StateGraph([s0], [0], [], {})
    invs = state_invariants()
    head = 0
    while head < len(g.states):
        s = g.states[head]
        msgs = [inv.name for inv in invs if inv.check is not None and inv.check(c, s) is not None]
        if msgs:
            g.bad[head] = ", ".join(msgs)
        for t in reduced_successors(c, s):
            ns = canonical(t.state)
            j = index.setdefault(ns, len(g.states))
            if j == len(g.states):
                if j >= limit:
                    raise ValueError(
                        f"graph: more than {limit} reachable states; choose smaller bounds "
                        "(--files, --vmas, --cpus, --faults, ...) or a --variant"
                    )
                g.states.append(ns)
                g.depth.append(g.depth[head] + 1)
            st = Step(t.action, t.args, t.outcome, ns)
            g.edges.append((head, j, actor(st), f"{step_call(t.action, t.args)} -> {t.outcome}"))
        head += 1
    return g


def node_label(s: State) -> str:
    prog = f"{s.admin.prog}:{s.admin.pc}" if s.admin.prog else "admin idle"
    alive = "".join("A" if d.alive else "." for d in s.devs)
    return f"{prog} alive={alive} ptes={len(s.entries)}" + (f" oops={s.oops}" if s.oops else "")


def graph_dot(g: StateGraph, title: str) -> str:
    out = [
        "digraph devdax {",
        f"  label={_q(title)}; labelloc=t; rankdir=TB;",
        '  node [shape=box, fontname="monospace", fontsize=9]; edge [fontname="monospace", fontsize=8];',
    ]
    for i, s in enumerate(g.states):
        extra = f', color="{RED}", fontcolor="{RED}", penwidth=2' if i in g.bad else ""
        bad = f"\\nbreaks {g.bad[i]}" if i in g.bad else ""
        out.append(f'  s{i} [label={_q(f"{i}: {node_label(s)}")[:-1]}{bad}"{extra}];')
    for a, b, lane, call in g.edges:
        out.append(f'  s{a} -> s{b} [label={_q(call)}, color="{colour(lane)}"];')
    return "\n".join([*out, "}"]) + "\n"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _positions(g: StateGraph) -> dict[int, tuple[float, float]]:
    """Nodes in rows by depth, each row ordered by the mean position of its parents (one pass of the
    barycentre heuristic: fewer crossings, deterministic)."""
    parents: dict[int, list[int]] = {}
    for a, b, _, _ in g.edges:
        if g.depth[a] < g.depth[b]:
            parents.setdefault(b, []).append(a)
    levels: dict[int, list[int]] = {}
    for i, d in enumerate(g.depth):
        levels.setdefault(d, []).append(i)
    order: dict[int, float] = {0: 0.0}
    pos: dict[int, tuple[float, float]] = {}
    widest = max(len(v) for v in levels.values())
    for d in sorted(levels):

        def centre(i: int) -> tuple[float, int]:
            ps = parents.get(i, [])
            return (sum(order[p] for p in ps) / len(ps) if ps else 0.0, i)

        row = sorted(levels[d], key=centre)
        for k, i in enumerate(row):
            order[i] = k / max(1, len(row) - 1)
            pos[i] = (PAD + 40 + (widest - len(row)) * 23 + k * 46, d * 64.0)
    return pos


def _edge_path(g: StateGraph, pos: dict[int, tuple[float, float]], a: int, b: int) -> str:
    """A straight edge to the next depth, a bent one otherwise (so that it misses the nodes on the
    way); each ends on the target's circle, where its arrowhead goes."""
    (x1, y1), (x2, y2) = pos[a], pos[b]
    if a == b:
        return f"M{x1 + 9:.1f},{y1 - 9:.1f} c 24,-20 24,20 3,15"
    bend = 0.0 if g.depth[b] == g.depth[a] + 1 else 28.0 + 0.2 * abs(x2 - x1)
    cx, cy = (x1 + x2) / 2 + (bend if g.depth[b] > g.depth[a] else 0), (y1 + y2) / 2 - bend
    dx, dy = x2 - cx, y2 - cy
    norm = max(1e-9, (dx * dx + dy * dy) ** 0.5)
    ex, ey = x2 - NODE_R * dx / norm, y2 - NODE_R * dy / norm
    return f"M{x1:.1f},{y1:.1f} Q{cx:.1f},{cy:.1f} {ex:.1f},{ey:.1f}"


NODE_R = 13


def _graph_head(title: list[str]) -> list[str]:
    body = [_text(PAD, PAD + 14 + 18 * k, t, 13, font_weight="bold") for k, t in enumerate(title)]
    y = PAD + 18 * len(title) + 12
    for k, name in enumerate(ACTOR_COLOURS):
        body.append(
            f'<line x1="{PAD + k * 90}" y1="{y - 4}" x2="{PAD + k * 90 + 22}" y2="{y - 4}" '
            f'stroke="{colour(name)}" stroke-width="2" marker-end="url(#arrow-{name})"/>'
        )
        body.append(_text(PAD + k * 90 + 28, y, name, SMALL, fill=colour(name)))
    note = "red node: breaks an invariant; hover a node or an edge for its state or call"
    body.append(_text(PAD + len(ACTOR_COLOURS) * 90, y, note, SMALL, fill=RED))
    markers = "".join(
        f'<marker id="arrow-{n}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
        for n, c in ACTOR_COLOURS.items()
    )
    return [f"<defs>{markers}</defs>", *body]


def graph_svg(g: StateGraph, title: list[str]) -> str:
    """The reachable graph, one row per breadth-first depth; each node's tooltip is its summary and
    each edge's the call, coloured by actor; states that break an invariant are red."""
    top = PAD + 18 * len(title) + 46
    pos = {i: (x, y + top) for i, (x, y) in _positions(g).items()}
    head_w = max([_w(t, 13) for t in title] + [len(ACTOR_COLOURS) * 90 + _w("x" * 76, SMALL)])
    width = max(max(x for x, _ in pos.values()) + 40, head_w) + PAD
    height = max(y for _, y in pos.values()) + 30 + PAD
    body = _graph_head(title)
    for a, b, lane, call in g.edges:
        kind = "cpu" if lane.startswith("cpu") else lane if lane in ACTOR_COLOURS else "kernel"
        body.append(
            f'<path d="{_edge_path(g, pos, a, b)}" fill="none" stroke="{colour(lane)}" stroke-width="1.2" '
            f'marker-end="url(#arrow-{kind})"><title>{escape(call)}</title></path>'
        )
    for i, (x, y) in sorted(pos.items()):
        fill, stroke = (RED_BG, RED) if i in g.bad else ("white", "#333")
        tip = f"{i}: {node_label(g.states[i])}" + (f" / breaks {g.bad[i]}" if i in g.bad else "")
        body.append(
            f'<g class="node"><title>{escape(tip)}</title><circle cx="{x:.1f}" cy="{y:.1f}" r="{NODE_R}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            + _text(x, y + 4, str(i), 10, text_anchor="middle")
            + "</g>"
        )
    return _svg(width, height, body)


def graph_title(cfg: Config, g: StateGraph) -> list[str]:
    counts = f"{len(g.states)} states, {len(g.edges)} transitions, {len(g.bad)} breaking an invariant"
    return [*pack(cfg.describe(), "", "  ", " "), counts]


def run_graph(cfg: Config, dot: str | None, svg: str | None) -> str:
    """`devdax graph`: writes the files asked for; returns the DOT text when no file is named, and a
    one-line summary otherwise. Raises ValueError (a usage error) past the state limit."""
    g = explore(cfg)
    title = graph_title(cfg, g)
    if dot is None and svg is None:
        return graph_dot(g, " / ".join(t.strip() for t in title))
    try:
        for path, text in (
            (dot, graph_dot(g, " / ".join(t.strip() for t in title))),
            (svg, graph_svg(g, title)),
        ):
            if path is not None:
                with open(path, "w") as f:
                    f.write(text)
    except OSError as exc:
        raise ValueError(f"graph: cannot write {exc.filename}: {exc.strerror}") from None
    return " ".join(t.strip() for t in title) + "\n"


# ------------------------------------------------------------------------------- docs ----

#: the configuration docs/pictures/ draws the state graph of (small enough to read whole)
DOCS_GRAPH_VARIANT = "no-synchronize"


def docs_pictures() -> dict[str, str]:
    """docs/pictures/, file name -> text: each variant's counterexample (its first caught property,
    as `devdax check --variant V --svg` draws it) and one state graph. tests/author/test_pictures.py
    checks that the committed files are these."""
    from devdax.model.checker import check
    from devdax.spec.variants import variant_config

    out: dict[str, str] = {}
    for name, var in VARIANTS.items():
        cfg = variant_config(var)
        v = chosen(check(Ctx.of(cfg)), name)
        if v is not None:
            out[f"{name}.svg"] = sequence_svg(cfg, v, f"variant {name}")
    cfg = variant_config(VARIANTS[DOCS_GRAPH_VARIANT])
    g = explore(cfg)
    out[f"graph-{DOCS_GRAPH_VARIANT}.svg"] = graph_svg(g, graph_title(cfg, g))
    out.update(example_pictures())
    return out


def example_pictures() -> dict[str, str]:
    """example-NAME.svg for each profile file in docs/examples/ that check finds wrong: what
    `devdax check --profile docs/examples/NAME.toml --svg` draws, run from the repository root so
    the picture names the file as the docs do."""
    import contextlib
    from pathlib import Path

    from devdax import api

    root = Path(__file__).resolve().parents[1]
    out: dict[str, str] = {}
    with contextlib.chdir(root):
        for path in sorted(Path("docs/examples").glob("*.toml")):
            report = api.check(str(path))
            v = chosen(report.result, None, Ctx.of(report.config).prof.findings)
            if v is not None and not report.passed:
                out[f"example-{path.stem}.svg"] = sequence_svg(report.config, v, f"profile {path}")
    return out


def main(argv: Sequence[str]) -> int:
    """`python -m devdax.picture [DIR]` regenerates docs/pictures/ (or DIR)."""
    from pathlib import Path

    target = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "docs" / "pictures"
    target.mkdir(parents=True, exist_ok=True)
    for name, text in docs_pictures().items():
        (target / name).write_text(text)
    return 0


__all__ = [
    "GRAPH_LIMIT",
    "chosen",
    "docs_pictures",
    "explore",
    "graph_dot",
    "graph_svg",
    "lanes",
    "run_graph",
    "sequence_mermaid",
    "sequence_svg",
    "write_check_pictures",
]


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
