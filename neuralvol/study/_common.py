"""Helpers shared by the studies: loading volumes, markdown tables, lazy matplotlib."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


def load(path):
    from ..volume_io import read_volume
    vf = read_volume(path)
    return Path(path).name.split(".")[0], vf


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("the studies need matplotlib for their pictures: pip install matplotlib") from None
    return plt


def out_dir(path) -> Path:
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {os.fspath(p)!r}: {exc.strerror}") from None
    return p
