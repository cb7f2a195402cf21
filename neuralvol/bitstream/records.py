"""Typed records of a model entry: the training summary and the storage entry.

Each field says, in its metadata, how the compact (version 3) header stores it (``kind``),
its bit in that header's presence mask (``bit``: a format constant, append only), and the
longest value it can take (``worst``), from which the byte budget sizes the header before
fitting. :data:`TRAINING_KEYS` and :func:`worst_case_training` are derived from these, so
a new field is declared once. ``to_dict`` writes the JSON keys in the order of the fields
(the order files have always had) and leaves out optional fields that are unset.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# A curve point as long as any real one (time, step, PSNR), and the most points a curve keeps.
WORST_CURVE_POINT = [12345.67, 1234567, 123.45]
CURVE_POINTS = 9


def _spec(kind: str, bit: int, worst, optional: bool = False) -> dict:
    return {"kind": kind, "bit": bit, "worst": worst, "optional": optional}


@dataclass
class TrainingSummary:
    """How a network was fitted: what the header's ``training`` entry records."""

    steps: int | None = field(default=None, metadata=_spec("uint", 1, 2 ** 21 - 1))
    seconds: float | None = field(default=None, metadata=_spec("num", 2, 123456.789))
    stopped: str | None = field(default=None, metadata=_spec("stopped", 3, "time_budget"))
    # [seconds or None, step, PSNR] every so often during the fit
    curve: list = field(default_factory=list, metadata=_spec("curve", 7, [WORST_CURVE_POINT] * CURVE_POINTS))
    device: str | None = field(default=None, metadata=_spec("device", 4, "cuda"))
    seed: int | None = field(default=None, metadata=_spec("uint", 5, 2 ** 31))
    psnr: float | None = field(default=None, metadata=_spec("num", 0, 99.9999))  # None when exact
    exact: bool | None = field(default=None, metadata=_spec("bool", 6, False))
    # set by the PSNR-target search only
    target_psnr: float | None = field(default=None, metadata=_spec("num", 8, 99.9999, optional=True))
    target_reached: bool | None = field(default=None, metadata=_spec("bool", 9, False, optional=True))
    # keys this version does not know, kept as read (a file with any is written as version 2)
    extra: dict = field(default_factory=dict, metadata={"extra": True})
    # Not a key: the file records only the fields in BRIEF_KEYS (and the target ones, when
    # set). Small quantised files are written so (neuralvol.bitstream.budget.recorded_training):
    # steps, seconds, stop reason, device and seed take 10-13 header bytes, a sixth of a
    # 150-byte file. The object compress returns still holds them all.
    brief: bool = field(default=False, metadata={"local": True})

    def to_dict(self) -> dict:
        out = {}
        for f in _record_fields(TrainingSummary):
            value = getattr(self, f.name)
            if f.metadata["optional"]:
                keep = value is not None
            else:
                keep = not self.brief or f.name in BRIEF_KEYS
            if keep:
                out[f.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingSummary":
        names = {f.name for f in _record_fields(cls)}
        details = [f.name for f in _record_fields(cls) if not f.metadata["optional"] and f.name not in BRIEF_KEYS]
        brief = not any(name in d for name in details)
        return cls(**{k: v for k, v in d.items() if k in names},
                   extra={k: v for k, v in d.items() if k not in names}, brief=brief)


@dataclass
class StorageEntry:
    """How quantised parameters are stored: a reader rebuilds every group's step from it."""

    table_step: float
    mlp_steps: list[float]
    precision: str = "quantised"
    allocation: str = "sqrt_size"

    def to_dict(self) -> dict:
        return {"precision": self.precision, "allocation": self.allocation, "table_step": self.table_step,
                "mlp_steps": list(self.mlp_steps)}

    @classmethod
    def from_dict(cls, d: dict) -> "StorageEntry":
        """The entry of a header's ``storage`` dict; KeyError/TypeError/ValueError when malformed."""
        if d.get("allocation") != "sqrt_size":
            raise ValueError(f"unknown step allocation {d.get('allocation')!r}")
        return cls(table_step=float(d["table_step"]), mlp_steps=[float(v) for v in d["mlp_steps"]],
                   precision=d["precision"], allocation=d["allocation"])

    @classmethod
    def worst_case(cls, n_mlp: int) -> "StorageEntry":
        """As long as any real entry for ``n_mlp`` MLP layers (steps have
        ``quantise.STEP_DIGITS`` = 3 significant digits)."""
        return cls(table_step=9.99e-05, mlp_steps=[9.99e-05] * n_mlp)


# What a brief training record keeps: how good the file is, measured when it was written.
BRIEF_KEYS = ("psnr", "exact")


def _record_fields(cls) -> list[dataclasses.Field]:
    """The fields a header records (not the unknown keys' dict, not in-memory state)."""
    return [f for f in dataclasses.fields(cls) if not (f.metadata.get("extra") or f.metadata.get("local"))]


# The compact header's training fields, in presence-mask bit order, with their kinds.
TRAINING_KEYS = tuple((f.name, f.metadata["kind"])
                      for f in sorted(_record_fields(TrainingSummary), key=lambda f: f.metadata["bit"]))
assert [f.metadata["bit"] for f in sorted(_record_fields(TrainingSummary), key=lambda f: f.metadata["bit"])] == \
    list(range(len(TRAINING_KEYS))), "mask bits must be 0..n-1"


def worst_case_training(device: str, record_timings: bool, seed: int | None = None,
                        steps: int | None = None) -> TrainingSummary:
    """A summary as long as any real one (the ``worst`` of every required field), with the
    real ``device`` and, when known, ``seed`` and ``steps``; no seconds unless timed."""
    worst = {f.name: f.metadata["worst"] for f in _record_fields(TrainingSummary) if not f.metadata["optional"]}
    worst.update(device=str(device), seconds=worst["seconds"] if record_timings else None)
    if seed is not None:
        worst["seed"] = int(seed)
    if steps is not None:
        worst["steps"] = int(steps)
    return TrainingSummary(**worst)
