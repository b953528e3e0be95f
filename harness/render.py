"""Results as a terminal table, markdown, CSV or JSON. JSON and CSV carry every column.

The terminal table fits the width it is given: cells of text columns are ellipsized first, then
whole columns are dropped, lowest priority first (``DROP_ORDER``), and a footer line names what was
left out and how to get it (``--wide``, ``--columns``). A row is never wrapped onto a second line.
"""

from __future__ import annotations

import csv
import html
import io
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from harness import strict_json
from harness.columns import (
    KEEP,
    VIEWS,
    WIDE,
    Column,
    default_view,
    display_rows,
    noise_flags,
    notes,
    num,
    parse_columns,
    resolve,
)
from harness.compare import CaseComparison
from harness.errors import ConfigError
from harness.result import COLUMNS, CaseResult

__all__ = ["FORMATS", "WIDE", "display_rows", "notes", "parse_columns", "render", "table"]

FORMATS = ("table", "markdown", "csv", "json", "parquet")

_GAP = 1  # space between columns (as ps and ls -l)
_ELLIPSIS = "…"
_HARD_MIN = 4  # narrowest an elided column gets: 3 characters and the ellipsis


def _elide(text: str, width: int, middle: bool = False) -> str:
    """``text`` cut to ``width`` characters with an ellipsis at its end or in its middle."""
    if len(text) <= width:
        return text
    if middle and width >= 5:
        tail = (width - 1) // 2
        return text[: width - 1 - tail] + _ELLIPSIS + text[len(text) - tail :]
    return text[: max(width - 1, 0)] + _ELLIPSIS


def fit(
    chosen: list[Column], cells: list[list[str]], width: int | None, droppable: Sequence[str]
) -> tuple[list[int], list[int], list[str]]:
    """Which columns to show and how wide, so that a row fits ``width`` characters.

    Returns (indices of kept columns, their widths, keys of dropped columns). Text columns are
    ellipsized to their ``elide`` width, then ``droppable`` columns go in that order, then text
    columns shrink to 4 characters. ``width=None`` keeps every column at its natural width.
    """
    natural = [max([len(c.header), *(len(row[i]) for row in cells)]) for i, c in enumerate(chosen)]
    kept = list(range(len(chosen)))
    widths = dict(enumerate(natural))

    def total() -> int:
        return sum(widths[i] for i in kept) + _GAP * (len(kept) - 1)

    if width is None or total() <= width:
        return kept, [widths[i] for i in kept], []

    def shrink(floor: Callable[[Column], int]) -> None:
        # Take a character at a time from the widest elidable column above its floor.
        while total() > width:
            room = [i for i in kept if chosen[i].elide and widths[i] > floor(chosen[i])]
            if not room:
                return
            widest = max(room, key=lambda i: widths[i] - floor(chosen[i]))
            widths[widest] -= 1

    shrink(lambda c: max(c.elide or 0, _HARD_MIN, len(c.header)))
    dropped = []
    for key in droppable:
        if total() <= width:
            break
        index = next((i for i in kept if chosen[i].key == key), None)
        if index is not None:
            kept.remove(index)
            dropped.append(key)
    shrink(lambda c: _HARD_MIN)
    return kept, [widths[i] for i in kept], dropped


def _rich_table(
    header: list[str], rows: list[list[str]], widths: list[int], right: list[bool],
    styles: Sequence[str | None], middle: Sequence[bool] | None = None,
) -> Table:  # fmt: skip
    out = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 0))
    for name, w, r in zip(header, widths, right, strict=True):
        out.add_column(_elide(name, w), width=w, no_wrap=True, overflow="ellipsis",
                       justify="right" if r else "left")  # fmt: skip
    for row, style in zip(rows, styles, strict=True):
        mids = middle or [False] * len(row)
        cells = (_elide(c, w, m) for c, w, m in zip(row, widths, mids, strict=True))
        out.add_row(*cells, style=style)
    return out


def _print(title: str, table: Table, footnotes: list[str], width: int, color: bool) -> str:
    console = Console(
        file=io.StringIO(), width=width, force_terminal=color, no_color=not color,
        color_system="standard" if color else None, highlight=False, soft_wrap=False,
    )  # fmt: skip
    if title:
        console.print(_elide(title, width), markup=False)
    console.print(table)
    for line in footnotes:
        console.print(f"note: {line}", markup=False)
    text: str = console.file.getvalue()  # type: ignore[attr-defined]
    return text


def table(
    results: Sequence[CaseResult], title: str = "", keys: Sequence[str] | None = None,
    width: int | None = None, color: bool = False,
) -> str:  # fmt: skip
    """The terminal view: ``keys`` (default ``default_view``: the decoders' columns for
    decoder rows) fitted to ``width`` characters (``None``: no limit, every chosen column at
    full width). ANSI colours when ``color``."""
    if keys is None:
        keys, droppable = default_view(results)
    else:
        droppable = VIEWS.get(tuple(keys)) or tuple(k for k in reversed(keys) if k not in KEEP)
    chosen = resolve(results, keys)
    cells = [[c.cell(r) for c in chosen] for r in results]
    kept, widths, dropped = fit(chosen, cells, width, droppable)
    status_styles = {"failed": "red", "skipped": "yellow"}
    styles = [
        "magenta" if r.fidelity_ok is False
        else "yellow" if noise_flags(r) else status_styles.get(r.status)
        for r in results
    ]  # fmt: skip
    out = _rich_table(
        [chosen[i].header for i in kept], [[row[i] for i in kept] for row in cells], widths,
        [chosen[i].right for i in kept], styles, [chosen[i].middle for i in kept],
    )  # fmt: skip
    footnotes = notes(results)
    if dropped:
        shown = ",".join(chosen[i].key for i in kept)
        footnotes.append(
            f"not shown at {width} columns: {', '.join(dropped)}; --wide shows every column, "
            f"--columns picks them (e.g. --columns {shown},{dropped[0]})"
        )
    line = sum(widths) + _GAP * (len(widths) - 1)
    return _print(title, out, footnotes, width or max(line, len(title), 40), color)


def text_table(
    title: str,
    header: list[str],
    rows: list[list[str]],
    styles: Sequence[str | None],
    footnotes: list[str],
    width: int | None = None,
) -> str:
    """Any rows of text as a terminal table, left-aligned, elided to ``width`` characters
    (``None``: every cell whole)."""
    chosen = [Column(h, h, lambda r: "", False, False) for h in header]
    kept, widths, _ = fit(chosen, rows, width, [])
    out = _rich_table(
        [header[i] for i in kept], [[row[i] for i in kept] for row in rows], widths,
        [False] * len(kept), styles,
    )  # fmt: skip
    line = sum(widths) + _GAP * (len(widths) - 1)
    return _print(title, out, footnotes, width or max(line, len(title), 40), False)


def markdown(
    results: Sequence[CaseResult], title: str = "", keys: Sequence[str] | None = None
) -> str:
    keys = keys or default_view(results)[0]
    return markdown_table(title, *display_rows(results, keys), notes(results))


def markdown_table(
    title: str, header: list[str], rows: list[list[str]], footnotes: list[str]
) -> str:
    # Names come from users (models, run ids, reasons): raw HTML in them must stay text where
    # the markdown is rendered (GitHub's step summary renders inline HTML).
    lines = [f"### {_md(title)}", ""] if title else []
    lines.append("| " + " | ".join(_md(h) for h in header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    lines += ["", *(f"> note: {_md(line)}" for line in footnotes)] if footnotes else []
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """``text`` with HTML's special characters escaped (``<b>`` shows as ``<b>``)."""
    return html.escape(text, quote=False)


def as_csv(results: Sequence[CaseResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: "" if v is None else v for k, v in r.to_dict().items()})
    return buffer.getvalue()


def as_json(results: Sequence[CaseResult]) -> str:
    rows: list[dict[str, Any]] = [r.to_dict() for r in results]
    return strict_json.dumps(rows, indent=2, default=str) + "\n"


def terminal_width() -> int | None:
    """The width of the terminal standard output writes to; ``None`` when it is not a
    terminal (a pipe or a file: rows are printed whole, for grep and less -S) and $COLUMNS is
    unset."""
    size = shutil.get_terminal_size(fallback=(0, 0))
    return size.columns or None


def render(
    results: Sequence[CaseResult], fmt: str, title: str = "", keys: Sequence[str] | None = None,
    width: int | None = None, color: bool = False,
) -> str:  # fmt: skip
    """``fmt`` is one of FORMATS but parquet (binary: ``harness.api.write_parquet``).
    ``keys`` and ``width`` apply to the table (``width``) and markdown views."""
    if fmt == "table":
        return table(results, title, keys, width, color)
    if fmt == "markdown":
        return markdown(results, title, keys)
    if fmt == "csv":
        return as_csv(results)
    if fmt == "json":
        return as_json(results)
    raise ConfigError(f"format {fmt!r} is not text; allowed here: table, markdown, csv, json")


def _ratio(c: CaseComparison) -> str:
    if c.ratio is None:
        return "-"
    return f"{c.ratio:.3f} [{c.ratio_ci_low:.3f}, {c.ratio_ci_high:.3f}]"


# (header, cell, ellipsize-to width or None, right-aligned)
_COMPARE: tuple[tuple[str, Callable[[CaseComparison], str], int | None, bool], ...] = (
    ("model", lambda c: c.model, 12, False),
    ("variant", lambda c: c.variant, 12, False),
    ("backend", lambda c: c.backend, 11, False),
    ("shape", lambda c: c.shape or "-", 8, False),
    ("verdict", lambda c: c.verdict + (" + FIDELITY FAIL" if c.fidelity_regression else "")
     + (" (noisy)" if c.noise else ""), None, False),
    ("base p50 ms", lambda c: num(c.base_p50_ms, 3), None, True),
    ("cand p50 ms", lambda c: num(c.candidate_p50_ms, 3), None, True),
    ("ratio [95% CI]", _ratio, None, True),
    ("p (Holm)", lambda c: "-" if c.p_adjusted is None else f"{c.p_adjusted:.2g}", None, True),
    ("noise floor", lambda c: "-" if c.noise_floor is None else f"{c.noise_floor:.1%}", None,
     True),
    ("fidelity", lambda c: f"{num(c.base_fidelity, 4)} -> {num(c.candidate_fidelity, 4)}",
     None, False),
    ("cost ratio", lambda c: num(c.cost_ratio, 3), None, True),
    ("reason", lambda c: c.reason, 24, False),
)  # fmt: skip
# Dropped first when the terminal is too narrow; the verdict, ratio and reason stay.
COMPARE_DROP_ORDER = ("cost ratio", "p (Holm)", "fidelity", "noise floor", "base p50 ms",
                      "cand p50 ms", "shape")  # fmt: skip


def comparison_rows(rows: list[CaseComparison]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a comparison's human-readable view."""
    return [c[0] for c in _COMPARE], [[c[1](r) for c in _COMPARE] for r in rows]


def render_comparison(
    rows: list[CaseComparison], fmt: str, title: str, width: int | None = None
) -> str:
    """A comparison as a table (fitted to ``width`` as ``table`` is; ``None``: no limit),
    markdown or JSON."""
    if fmt == "json":
        return strict_json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
    header, cells = comparison_rows(rows)
    noisy = [f"noisy {c.model}/{c.variant}/{c.backend} {c.shape or ''}: {c.noise}"
             for c in rows if c.noise]  # fmt: skip
    if fmt != "table":
        return markdown_table(title, header, cells, noisy)
    chosen = [Column(h, h, lambda r: "", right, elide) for h, _, elide, right in _COMPARE]
    kept, widths, dropped = fit(chosen, cells, width, COMPARE_DROP_ORDER)
    styles = ["red" if r.regression else None for r in rows]
    out = _rich_table(
        [header[i] for i in kept], [[row[i] for i in kept] for row in cells], widths,
        [chosen[i].right for i in kept], styles,
    )  # fmt: skip
    footnotes = noisy + (
        [f"not shown at {width} columns: {', '.join(dropped)}; --format json has every field"]
        if dropped
        else []
    )
    line = sum(widths) + _GAP * (len(widths) - 1)
    return _print(title, out, footnotes, width or max(line, len(title), 40), False)
