"""Checks that a written figure is a real picture, not just a file with PNG magic bytes."""

from __future__ import annotations

from pathlib import Path


def distinct_colours(path: Path) -> int:
    """How many distinct RGB colours the image at ``path`` has (decodes it fully)."""
    from PIL import Image

    with Image.open(path) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours or [])


def assert_real_png(path: Path, *, min_side: int = 200, min_colours: int = 20) -> None:
    """``path`` decodes as a PNG of at least ``min_side`` px a side with drawn content.

    A blank canvas, a truncated file or a PNG header glued to anything else fails: the image is
    decoded, its size read, and a plot (axes, text, bars) has many colours where an empty one has 1.
    """
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG", f"{path.name}: {img.format}"
        img.load()  # decodes every byte: a truncated file raises here
        assert min(img.size) >= min_side, f"{path.name}: {img.size}"
    assert distinct_colours(path) >= min_colours, f"{path.name} looks blank"
