"""Fuzz the `.nvc` reader with mutations of real files: every one must open or be rejected.

Mutations of real version 1, 2 and 3 files: random bit flips, truncations, payload bytes
rewritten under recomputed CRCs, and header-field rewrites (dims, widths, layers, levels,
table size, counts, steps, dtype, shapes, offsets set to huge, negative, zero or
wrong-type values) re-packed with valid CRCs, so they reach the header checks rather than
stopping at a CRC. Each mutated file is opened in-process and decoded on a 4^3 grid and a
2^3 region; anything but success or a :class:`neuralvol.NeuralVolError` is a failure.

    .venv/bin/python benchmarks/fuzz.py --count 100000 --seed 0 --cli 200

``tests/test_fuzz.py`` imports :func:`mutate` and :func:`try_open` from here.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import neuralvol as nv  # noqa: E402
from neuralvol.bitstream import compact_header, container  # noqa: E402
from neuralvol.bitstream.schema import volumes_from_bytes  # noqa: E402

V1_FILE = REPO / "tests" / "data" / "format_v1_headsq_crop.nvc"
V2_FILE = REPO / "tests" / "data" / "format_v2_headsq_crop.nvc"
KINDS = ("flip", "truncate", "payload", "field")

HUGE = (10 ** 6, 10 ** 7, 2 ** 31, 2 ** 32 + 8, 10 ** 12, 2 ** 40 + 1, 2 ** 53, 2 ** 62, 2 ** 63, 2 ** 64, 10 ** 30, 10 ** 4000)
SMALL = (0, 1, -1, -2, -(2 ** 31), -(2 ** 63))
ODD = ("x", "", None, True, False, [], {}, [1, 2], {"a": 1}, 1.5, -0.0, 1e308, float("nan"), float("inf"),
       float("-inf"), "16", [10 ** 6] * 3)


# -- the container, taken apart and put back with valid CRCs ------------------------------

def split_json(data: bytes) -> tuple[dict, int, bytes]:
    """(header with its section table, format version, section payload) of a v1/v2 file."""
    _, version, flags, hlen, _ = container.PREAMBLE.unpack_from(data, 0)
    stored = data[container.PREAMBLE.size:container.PREAMBLE.size + hlen]
    header = json.loads(container.unpack_header(stored, flags, "fuzz"))
    return header, version, data[container.PREAMBLE.size + hlen:]


def join_json(header: dict, version: int, payload: bytes) -> bytes:
    """v1/v2 bytes of ``header`` (allowing NaN, which Python's JSON reader accepts) and payload."""
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    stored, flags = container.pack_header(text, version)
    return container.PREAMBLE.pack(container.MAGIC, version, flags, len(stored), zlib.crc32(stored)) + stored + payload


def split_compact(data: bytes) -> tuple[dict, dict, bytes]:
    """(header, section entry, coded payload) of a v3 or v5 file."""
    start = len(container.MAGIC) + container.VERSION_FIELD.size
    header, section, used = compact_header.unpack(data[start:-container.CRC_FIELD.size], "fuzz",
                                                  container.VERSION_FIELD.unpack_from(data, 8)[0])
    return header, section, data[start + used:-container.CRC_FIELD.size]


def join_compact(header: dict, section: dict, payload: bytes) -> bytes | None:
    """v3 (v5 with a post filter) bytes, packed without the writer's round-trip check; None
    when the fields cannot be written at all (a negative or non-integer where the layout has
    a varint)."""
    try:
        body = compact_header._pack(header, section)  # noqa: SLF001 - the unchecked packer on purpose
        version = compact_header.version_of(header["models"][0])
    except Exception:  # noqa: BLE001 - _Unrepresentable, KeyError, TypeError...: pick another mutation
        return None
    head = container.MAGIC + container.VERSION_FIELD.pack(version) + body + payload
    return head + container.CRC_FIELD.pack(zlib.crc32(head))


def with_valid_crcs(data: bytes) -> bytes:
    """``data`` with its CRCs recomputed (header and sections for v1/v2, the final one for v3),
    so that payload damage reaches the decoders."""
    if container._is_compact(data):  # noqa: SLF001 - the reader's own test
        return data[:-4] + container.CRC_FIELD.pack(zlib.crc32(data[:-4]))
    header, version, payload = split_json(data)
    for entry in header["sections"]:
        entry["crc32"] = zlib.crc32(payload[entry["offset"]:entry["offset"] + entry["nbytes"]])
    return join_json(header, version, payload)


# -- mutations ---------------------------------------------------------------------------

def _leaves(node, path=()):
    """Every (path, value) in a JSON tree, containers included."""
    out = [(path, node)]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _leaves(v, path + (i,))
    return out


def _hostile_value(rng: random.Random, old, typed: bool):
    """A replacement for ``old``: near it, huge, negative/zero, or (unless ``typed``) any type."""
    if isinstance(old, bool) or not isinstance(old, (int, float)):
        return rng.choice(ODD) if not typed else (rng.choice(("x", "", "relu", "float64", "int8")) if isinstance(old, str)
                                                  else old)
    roll = rng.random()
    if roll < 0.3:
        value = rng.choice(HUGE)
    elif roll < 0.5:
        value = rng.choice(SMALL)
    elif roll < 0.75:
        value = old + rng.choice((-1, 1, 7, -8, 8)) if isinstance(old, int) else old * rng.choice((0, -1, 10, 1e30))
    elif roll < 0.85:
        value = old * rng.choice((2, 3, 10, 1000)) if isinstance(old, int) else rng.choice((float("nan"), float("inf")))
    else:
        value = rng.choice(ODD)
    if typed:  # the compact layout has uints and numbers only
        if isinstance(old, int):
            value = value if isinstance(value, int) and not isinstance(value, bool) else rng.choice(HUGE)
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            value = rng.choice((0.0, -1.0, 1e300, float("nan"), float("inf")))
    return value


# The fields whose values say how much to allocate, tried more often than the rest.
FOCUS = ("dims", "encoding", "network", "storage", "sections", "coding", "shape", "count", "mlp_steps",
         "segments", "offset", "nbytes", "extent", "dtype", "value_range", "spacing", "origin", "models")


def _set(tree, path, value):
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _rewrite(rng: random.Random, tree, typed: bool) -> None:
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        leaves = _leaves(tree)[1:]
        focused = [leaf for leaf in leaves if any(k in FOCUS for k in leaf[0] if isinstance(k, str))]
        path, old = rng.choice(focused if focused and rng.random() < 0.8 else leaves)
        if not typed and rng.random() < 0.08 and isinstance(path[-1], str):
            node = tree
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
            return
        _set(tree, path, _hostile_value(rng, old, typed))


def mutate(rng: random.Random, data: bytes, kind: str) -> bytes:
    """One mutation of ``kind`` (see KINDS) of the container bytes ``data``."""
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 3, 8))):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "truncate":
        return data[:rng.randrange(len(data))]
    compact = container._is_compact(data)  # noqa: SLF001 - the reader's own test
    if kind == "payload":
        payload_start = container.header_size(data) - (container.CRC_FIELD.size if compact else 0)
        payload_stop = len(data) - (container.CRC_FIELD.size if compact else 0)
        out = bytearray(data)
        for _ in range(rng.choice((1, 2, 4, 16))):
            out[rng.randrange(payload_start, payload_stop)] = rng.randrange(256)
        return with_valid_crcs(bytes(out))
    if kind != "field":
        raise ValueError(f"unknown mutation kind {kind!r}")
    if compact:
        for _ in range(20):
            header, section, payload = split_compact(data)
            tree = {"model": header["models"][0], "coding": section["coding"]}
            _rewrite(rng, tree, typed=True)
            section["shape"] = [section["coding"]["count"]]
            out = join_compact(header, section, payload)
            if out is not None:
                return out
        return data
    header, version, payload = split_json(data)
    _rewrite(rng, header, typed=False)
    return join_json(header, version, payload)


def try_open(data: bytes) -> str:
    """'accepted' or 'rejected'; raises whatever else the reader raises (a failure)."""
    try:
        volumes = volumes_from_bytes(data, "fuzz")
        # Raw float16 sections may hold NaN (the CRC is of the bytes): integer outputs of
        # NaN are meaningless but no error, so numpy's cast warning is silenced here.
        with np.errstate(invalid="ignore"):
            for vol in volumes:
                corner = [min(1, n - 1) for n in vol.dims]
                vol.decode(dims=(4, 4, 4))
                vol.decode(region=(0, corner[0], 0, corner[1], 0, corner[2]))
    except nv.NeuralVolError:
        return "rejected"
    return "accepted"


def compact_file(folder: Path) -> bytes:
    """A version-3 file of a small crop of the CT head (the compact header holds one
    quantised model), made once and cached in ``folder``."""
    path = folder / "fuzz_v3_headsq.nvc"
    if not path.exists():
        import torch
        torch.set_num_threads(1)
        headsq = np.load(REPO / "data" / "headsq_quarter.npy")
        vol = nv.compress(np.ascontiguousarray(headsq[40:56, 20:36, 20:36]), ratio=40, steps=60, seed=0,
                          record_timings=False, post_filter=False)
        vol.save(path)
    data = path.read_bytes()
    assert nv.read_header(path)["version"] == container.COMPACT_VERSION
    return data


def filtered_file(folder: Path) -> bytes:
    """The version-3 file with a 5x5x5 post filter attached by hand: a version-5 file (its 27
    weights; a 3x3x3 kernel's 8 take the same path)."""
    from neuralvol.postfilter import PostFilter
    path = folder / "fuzz_v5_k5_headsq.nvc"
    if not path.exists():
        compact_file(folder)
        vol = nv.open(folder / "fuzz_v3_headsq.nvc")
        vol.post_filter = PostFilter(shift=11, weights=(1400, 120, 30, 60, -20, 4, 25, -3, 1, 90, -10, 5, 7, 2, 1, 3,
                                                        1, 0, 12, 3, 1, 2, 1, 0, 1, 0, 0), offset=-7)
        vol.invalidate_size()
        vol.save(path)
    assert nv.read_header(path)["version"] == compact_header.FILTERED_COMPACT_VERSION
    return path.read_bytes()


def originals(folder: Path) -> dict[str, bytes]:
    return {"v1": V1_FILE.read_bytes(), "v2": V2_FILE.read_bytes(), "v3": compact_file(folder),
            "v5": filtered_file(folder)}


def cases(files: dict[str, bytes], count: int, seed: int):
    """(file version, kind, mutated bytes) for ``count`` mutations, kinds and files in turn."""
    rng = random.Random(seed)
    names = sorted(files)
    for n in range(count):
        version = names[n % len(names)]
        kind = KINDS[(n // len(names)) % len(KINDS)]
        yield version, kind, mutate(rng, files[version], kind)


def run_cli(data: bytes, folder: Path) -> list[str]:
    """Problems (exit codes other than 0/2, tracebacks) of ``info`` and ``decompress --scale 0.1``."""
    path = folder / "case.nvc"
    path.write_bytes(data)
    problems = []
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for args in (["info", str(path)], ["decompress", str(path), str(folder / "out.npy"), "--scale", "0.1", "-q"]):
        proc = subprocess.run([sys.executable, "-m", "neuralvol", *args], capture_output=True, text=True, env=env,
                              timeout=120)
        if proc.returncode not in (0, 2) or "Traceback" in proc.stderr:
            problems.append(f"{args[0]}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        if proc.returncode == 2 and len(proc.stderr.strip().splitlines()) != 1:
            problems.append(f"{args[0]}: exit 2 with {len(proc.stderr.splitlines())} lines of stderr")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="in-process mutations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", type=int, default=0, metavar="K", help="also run K mutations through the CLI")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = originals(Path(tempfile.gettempdir()))
        table: dict[tuple[str, str], Counter] = {}
        failures = []
        slowest = (0.0, "")
        t0 = time.perf_counter()
        for n, (version, kind, data) in enumerate(cases(files, args.count, args.seed)):
            t = time.perf_counter()
            try:
                outcome = try_open(data)
            except Exception as exc:  # noqa: BLE001 - a failure, recorded with its mutation
                outcome = "failure"
                failures.append(f"case {n} ({version} {kind}): {type(exc).__name__}: {str(exc)[:200]}")
            dt = time.perf_counter() - t
            slowest = max(slowest, (dt, f"case {n} ({version} {kind})"))
            table.setdefault((version, kind), Counter())[outcome] += 1
        seconds = time.perf_counter() - t0
        cli_counts, cli_problems, cli_seconds = Counter(), [], 0.0
        if args.cli:
            t0 = time.perf_counter()
            for n, (version, kind, data) in enumerate(cases(files, args.cli, args.seed + 1)):
                problems = run_cli(data, folder)
                cli_counts[kind] += 1
                cli_problems += [f"cli case {n} ({version} {kind}): {p}" for p in problems]
                if (n + 1) % 20 == 0:
                    print(f"CLI {n + 1}/{args.cli}: {len(cli_problems)} problems, {time.perf_counter() - t0:.0f} s",
                          file=sys.stderr, flush=True)
            cli_seconds = time.perf_counter() - t0
    print(f"{'file':<5} {'kind':<9} {'mutations':>9} {'accepted':>9} {'rejected':>9} {'failures':>9}")
    totals = Counter()
    for (version, kind), c in sorted(table.items()):
        total = sum(c.values())
        totals.update(c)
        print(f"{version:<5} {kind:<9} {total:>9} {c['accepted']:>9} {c['rejected']:>9} {c['failure']:>9}")
    print(f"{'all':<15} {sum(totals.values()):>9} {totals['accepted']:>9} {totals['rejected']:>9} "
          f"{totals['failure']:>9}   {seconds:.1f} s, slowest {slowest[0] * 1000:.0f} ms ({slowest[1]})")
    if args.cli:
        print(f"CLI: {sum(cli_counts.values())} mutations ({', '.join(f'{k} {v}' for k, v in sorted(cli_counts.items()))})"
              f" x (info, decompress --scale 0.1): {len(cli_problems)} problems, {cli_seconds:.1f} s")
    for line in (failures + cli_problems)[:20]:
        print(line)
    return 1 if failures or cli_problems else 0


if __name__ == "__main__":
    sys.exit(main())
