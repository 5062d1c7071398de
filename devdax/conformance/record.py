"""Recorded kernel runs (tests/kernel-results/<release>/) and the list of known disagreements.

A recording is what one Debian kernel did with each step of each scenario file: ``meta.json`` (kernel
line, ``uname -r``, Debian package and version, accelerator, the date of the last run recorded) and
``results.jsonl`` (one object per step: file, its hash when recorded, step, op, the kernel's
outcome and detail). The file hash (of everything but the documentation fields `source` and
`notes`) makes a recording of an edited scenario stale rather than silently wrong.

``disagreements.json`` beside the recordings lists every step where spec or impl does not predict
what a kernel did, each with a status: ``open`` (a devdax bug to fix, issue 12) or ``deliberate``
(a difference kept on purpose, with its reason). Anything not listed is a new disagreement and fails
`devdax conformance` and the test suite; a listed one that no longer occurs is stale and fails too,
so the list can only shrink by a fix that is seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RESULTS: Final = Path(__file__).resolve().parents[2] / "tests" / "kernel-results"
KNOWN: Final = RESULTS / "disagreements.json"
#: runs of a kernel with a patched module (`devdax conformance --module`): apart, since they are not
#: what the kernel line does and cover only the scenarios the patch is about
PATCHED: Final = RESULTS / "patched"


#: the fields of a scenario file that document it and never change what a kernel runs
DOC_FIELDS: Final = ("source", "notes")


def file_hash(path: str | Path) -> str:
    """What a kernel ran of a scenario file: its JSON without the documentation fields, in a
    canonical form. Any change to the setup, the steps or the expectations makes a recording stale;
    rewording a citation or a note does not."""
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        return hashlib.sha256(raw).hexdigest()[:16]
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in DOC_FIELDS}
    canon = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Recorded:
    """One recorded step."""

    linux: str  # the kernel line (6.1, 6.12, 7.2)
    file: str  # the scenario file's name (no folder)
    sha: str
    step: int
    op: str
    kernel: str
    detail: str | None


def write(release: str, meta: Mapping[str, object], rows: Iterable[Recorded], root: Path = RESULTS) -> Path:
    """Record ``rows`` for ``release``: the files they cover are replaced, every other file's rows are
    kept, so re-running one scenario re-records just that scenario."""
    d = root / release
    d.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    ran = {r.file for r in rows}
    if (d / "results.jsonl").is_file():
        linux = str(meta["kernel"])
        kept = [r for r in _rows(d, linux) if r.file not in ran]
        rows = sorted(kept + rows, key=lambda r: (r.file, r.step))
    (d / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    lines = [
        json.dumps(
            {
                "file": r.file,
                "sha": r.sha,
                "step": r.step,
                "op": r.op,
                "kernel": r.kernel,
                "detail": r.detail,
            },
            sort_keys=True,
        )
        for r in rows
    ]
    (d / "results.jsonl").write_text("\n".join(lines) + "\n")
    return d


def _rows(d: Path, linux: str) -> list[Recorded]:
    out: list[Recorded] = []
    for line in (d / "results.jsonl").read_text().splitlines():
        if line.strip():
            o = json.loads(line)
            out.append(
                Recorded(linux, o["file"], o["sha"], int(o["step"]), o["op"], o["kernel"], o.get("detail"))
            )
    return out


def load(root: Path = RESULTS) -> list[Recorded]:
    """Every recorded step of every recording under ``root``."""
    out: list[Recorded] = []
    for meta_path in sorted(root.glob("*/meta.json")):
        out += _rows(meta_path.parent, str(json.loads(meta_path.read_text())["kernel"]))
    return out


def releases(root: Path = RESULTS) -> dict[str, dict[str, object]]:
    """kernel line -> its recording's meta.json."""
    out: dict[str, dict[str, object]] = {}
    for meta_path in sorted(root.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        out[str(meta["kernel"])] = meta
    return out


@dataclass(frozen=True)
class Disagreement:
    """A step where a backend's outcome is not the kernel's."""

    linux: str
    file: str
    step: int
    op: str
    backend: str
    kernel: str
    predicted: str

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.linux, self.file, self.step, self.backend)


#: the detail of every step of a scenario the kernel backend could not set up: not run, not compared
SETUP = "setup: "


def not_run(r: Recorded) -> bool:
    return r.kernel == "skipped" and str(r.detail or "").startswith(SETUP)


def compare(
    recorded: Sequence[Recorded], predictions: dict[tuple[str, str], list[str]]
) -> list[Disagreement]:
    """``predictions[(backend, file)]`` is that backend's outcome list for the file."""
    out = []
    for r in recorded:
        if not_run(r):
            continue
        for (backend, file), outs in sorted(predictions.items()):
            if file == r.file and 0 <= r.step < len(outs) and outs[r.step] != r.kernel:
                out.append(Disagreement(r.linux, r.file, r.step, r.op, backend, r.kernel, outs[r.step]))
    return out


def known(path: Path = KNOWN) -> dict[tuple[str, str, int, str], dict[str, object]]:
    if not path.is_file():
        return {}
    return {
        (str(e["linux"]), str(e["file"]), int(str(e["step"])), str(e["backend"])): e
        for e in json.loads(path.read_text())
    }


def write_known(
    found: Sequence[Disagreement], path: Path = KNOWN, covered: set[tuple[str, str]] | None = None
) -> None:
    """Rewrite the list from what was found, keeping each entry's status and note. ``covered`` is the
    (kernel line, file) pairs the run compared: entries outside it are kept as they are (None: all)."""
    old = known(path)
    entries = [e for k, e in old.items() if covered is not None and (k[0], k[1]) not in covered]
    for d in sorted(found, key=lambda d: (d.file, d.step, d.backend, d.linux)):
        prev = old.get(d.key, {})
        entries.append(
            {
                "linux": d.linux,
                "file": d.file,
                "step": d.step,
                "op": d.op,
                "backend": d.backend,
                "kernel": d.kernel,
                "predicted": d.predicted,
                "status": prev.get("status", "open"),
                "note": prev.get("note", ""),
            }
        )
    entries.sort(key=lambda e: (str(e["file"]), int(str(e["step"])), str(e["backend"]), str(e["linux"])))
    path.write_text(json.dumps(entries, indent=1) + "\n")
