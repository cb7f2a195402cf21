"""How the reader maps a file's models to VTK, and the cache that keeps it from decoding twice.

A file's models are time steps x point arrays: models carrying times are grouped by time
(several arrays per step are several point arrays), distinct array names without times are
point arrays of one image, and anything else (repeated names, no times) is a series indexed
0, 1, 2, ... as before. A multi-component model becomes one VTK array of that many
components (with VTK component names when the file has them).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

#: decoded arrays the cache keeps at most (a request's arrays, a few time steps back and forth)
CACHE_ENTRIES = 16
#: and at most this many bytes of them (a 256^3 float32 array is 64 MiB)
CACHE_BYTES = 512 << 20


class ModelIndex:
    """The models of one file as time steps and array names."""

    def __init__(self, models):
        self.models = list(models)
        times = [m.time for m in self.models]
        names = [m.array_name for m in self.models]
        self.array_names = list(dict.fromkeys(names))
        if len(self.models) == 1:
            self.mode, self.times, self._step_of = "single", [], [None]
        elif all(t is not None for t in times):
            self.mode = "time"
            self.times = sorted({float(t) for t in times})
            self._step_of = [float(t) for t in times]
        elif len(set(names)) == len(names):
            self.mode, self.times, self._step_of = "arrays", [], [None] * len(names)
        else:  # repeated names and no times: each model is one step, indexed
            self.mode = "time"
            self.times = [float(i) for i in range(len(self.models))]
            self._step_of = list(self.times)
            self.array_names = [self.array_names[0]] if len(self.array_names) == 1 else self.array_names

    @property
    def selectable(self) -> list[str]:
        """Array names a user chooses among (ParaView's array selection): when there are several."""
        return self.array_names if len(self.array_names) > 1 else []

    def step_for(self, t: float | None) -> float | None:
        """The time step a requested time ``t`` shows: the last at or before it (ParaView's
        snap-to-step convention), the first one before the series starts."""
        if self.mode != "time":
            return None
        if t is None:
            return self.times[0]
        sorted_times = np.asarray(self.times)
        k = int(np.searchsorted(sorted_times, t + 1e-12 * max(1.0, abs(t)), "right")) - 1
        return float(sorted_times[max(k, 0)])

    def models_for(self, time_value: float | None, enabled) -> list[tuple[int, object]]:
        """(index, model) pairs to decode at ``time_value`` whose array ``enabled(name)`` says so."""
        chosen = []
        for i, (m, step) in enumerate(zip(self.models, self._step_of)):
            if self.mode == "time" and step != time_value:
                continue
            if self.selectable and not enabled(m.array_name):
                continue
            chosen.append((i, m))
        return chosen


class DecodeCache:
    """Decoded arrays keyed by everything a decode depends on, least recently used out.

    The key is (file path, mtime, size, model index, grid dims, extent, output dtype): a
    pipeline that re-executes with the same request (a second ``Update()`` after
    ``Modified()``, a rendering change, going back to a time step) gets the same values
    without evaluating the network again; a rewritten file has a new mtime/size."""

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES):
        self.entries, self.max_bytes = entries, max_bytes
        self._store: OrderedDict = OrderedDict()
        self.hits = 0

    def get(self, key):
        values = self._store.get(key)
        if values is not None:
            self._store.move_to_end(key)
            self.hits += 1
        return values

    def put(self, key, values: np.ndarray) -> None:
        if values.nbytes > self.max_bytes:
            return
        self._store[key] = values
        self._store.move_to_end(key)
        while len(self._store) > self.entries or sum(v.nbytes for v in self._store.values()) > self.max_bytes:
            self._store.popitem(last=False)

    def clear(self) -> None:
        self._store.clear()
