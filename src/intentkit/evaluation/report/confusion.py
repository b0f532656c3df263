"""The interactive confusion matrix: counts, the most-confused subset, and its SVG.

Only non-zero cells are drawn (a 150-label matrix is 22,500 cells but a few hundred non-zero
ones), so the full matrix stays a few tens of KB. Hover and click are handled by the page's JS
from the pointer position and the counts in the data blob, which covers empty cells too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from intentkit.evaluation.report.svg import esc

MAX_LABELS = 30  #: above this many classes the matrix opens on the most-confused subset


def confusion_counts(
    true_class: Sequence[str], pred_class: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """The sorted classes (true or answered) and the count matrix, rows true, columns answered."""
    classes = sorted(set(true_class) | set(pred_class))
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(cm, ([index[t] for t in true_class], [index[p] for p in pred_class]), 1)
    return classes, cm


def _fill(share: float, diagonal: bool) -> str:
    # Diagonal (right answers) in blue, errors in red; an error share is scaled x3 so that a 10 %
    # confusion already stands out (errors are what the reader looks for).
    if diagonal:
        return f"rgba(37,99,235,{0.12 + 0.88 * share:.2f})"
    return f"rgba(220,38,38,{0.25 + 0.75 * min(1.0, 3 * share):.2f})"


def confusion_svg(
    classes: Sequence[str], cm: np.ndarray, idx: Sequence[int], *, css_id: str, max_px: int = 920
) -> str:
    """The sub-matrix of ``idx`` (indices into ``classes``) as an SVG the page's JS drives.

    The ``<svg>`` carries ``data-idx`` (the class index of each row/column), ``data-x0``/
    ``data-y0`` (the grid's origin) and ``data-cell`` (cell size), so a pointer position maps to
    a (true, answered) pair without a listener per cell. Each drawn cell also has ``data-i``/
    ``data-j``. Shares are of the true class's full row, whatever subset is shown.
    """
    idx = list(idx)
    n = len(idx)
    cell = max(5.0, min(22.0, 640.0 / max(n, 1)))
    font = max(5.0, min(11.0, cell * 0.62))
    margin = int(min(220, max(len(classes[i]) for i in idx) * font * 0.58 + 12)) if n else 40
    x0, y0 = margin, margin
    size = int(x0 + n * cell + 8)
    # Column names are rotated -60 degrees: the last ones reach ~cos(60) of their length past
    # the grid's right edge.
    width = int(size + margin * 0.5)
    rows = cm.sum(axis=1)
    parts = [
        f'<rect class="cm-bg" x="{x0}" y="{y0}" width="{n * cell:.1f}" height="{n * cell:.1f}"/>'
    ]
    if n <= 40:
        for k in range(n + 1):
            v = k * cell
            parts.append(
                f'<line class="cm-grid" x1="{x0}" x2="{x0 + n * cell:.1f}" y1="{y0 + v:.1f}" '
                f'y2="{y0 + v:.1f}"/><line class="cm-grid" y1="{y0}" y2="{y0 + n * cell:.1f}" '
                f'x1="{x0 + v:.1f}" x2="{x0 + v:.1f}"/>'
            )
    for r, i in enumerate(idx):
        y = y0 + r * cell
        parts.append(
            f'<text class="cm-lab" x="{x0 - 4}" y="{y + cell * 0.72:.1f}" text-anchor="end" '
            f'font-size="{font:.1f}">{esc(classes[i])}</text>'
        )
        x = x0 + r * cell + cell * 0.7
        parts.append(
            f'<text class="cm-lab" transform="translate({x:.1f},{y0 - 4}) rotate(-60)" '
            f'font-size="{font:.1f}">{esc(classes[i])}</text>'
        )
    for r, i in enumerate(idx):
        for c, j in enumerate(idx):
            count = int(cm[i, j])
            if count == 0:
                continue
            share = count / rows[i] if rows[i] else 0.0
            parts.append(
                f'<rect class="cm-cell" data-i="{i}" data-j="{j}" x="{x0 + c * cell:.1f}" '
                f'y="{y0 + r * cell:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                f'fill="{_fill(share, i == j)}"/>'
            )
            if n <= MAX_LABELS and cell >= 16:
                parts.append(
                    f'<text class="cm-num{" on" if i == j and share > 0.55 else ""}" '
                    f'x="{x0 + (c + 0.5) * cell:.1f}" y="{y0 + (r + 0.5) * cell + 3.5:.1f}" '
                    f'text-anchor="middle">{count}</text>'
                )
    parts.append('<rect class="cm-sel" x="-99" y="-99" width="0" height="0"/>')
    data = ",".join(str(i) for i in idx)
    scale = min(1.0, max_px / width)
    return (
        f'<svg id="{css_id}" class="cm" viewBox="0 0 {width} {size}" width="{width * scale:.0f}" '
        f'height="{size * scale:.0f}" data-idx="{data}" data-x0="{x0}" data-y0="{y0}" '
        f'data-cell="{cell}" role="img" aria-label="confusion matrix">{"".join(parts)}</svg>'
    )


def most_confused_idx(cm: np.ndarray, k: int = MAX_LABELS) -> list[int]:
    """The ``k`` classes with the most errors made or received (evalplots' rule), sorted."""
    from intentkit.evaluation.figures import most_confused

    return [int(i) for i in most_confused(cm, k)]
