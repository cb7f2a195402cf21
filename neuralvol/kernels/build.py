"""Compile the C++ kernels once per machine and load them with ctypes.

The sources ship with the package (``*.cpp`` and ``*.h`` beside this file). On first use they are
compiled into one library with the system C++ compiler (``$CXX``, else ``c++``/``g++``) into a cache
directory keyed by the sources' hash, the compiler and the machine, so an edited source
or another compiler never reuses a stale library. The library is written to a temporary
name and renamed, so processes compiling at once (Dask workers) never load half a file.
Compiling takes ~1 s: the sources use a plain C ABI and include no torch headers.

Nothing here is required: without a compiler, or with ``NEURALVOL_KERNELS=0``, every
caller falls back to the pure-PyTorch path, which gives the same values to float
tolerance. :func:`status` says which path is in use and why.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

SOURCES = tuple(Path(__file__).with_name(name) for name in ("hashgrid_cpu.cpp", "mlp_cpu.cpp", "postfilter_cpu.cpp"))
HEADERS = tuple(Path(__file__).with_name(name) for name in ("threads.h", "grid_blend.h"))
ABI_VERSION = 8
# -ffp-contract=off: no fused multiply-add, so positions and weights round exactly as
# PyTorch's separate mul and add do. No -march=native: a cache on a shared home directory
# must load on every node of a cluster.
FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-pthread", "-ffp-contract=off", "-fno-math-errno")
# OpenMP, so the kernels run on PyTorch's own thread pool (see for_each_thread in the
# source); a compiler without it (clang without libomp) builds the std::thread version.
OPENMP_FLAGS = ("-fopenmp",)
#: what nv_mlp_isa() found on this CPU (mlp_cpu.cpp asks it at run time)
MLP_ISA = {0: "torch's GEMMs, no AVX-512", 1: "AVX-512, fp32 only", 2: "AVX-512 + BF16",
           3: "AVX-512 fp32, AMX-BF16 bf16"}
ENV_SWITCH = "NEURALVOL_KERNELS"
ENV_CACHE = "NEURALVOL_KERNEL_CACHE"

class Switch:
    """A process-wide switch that ``with switch.on():`` turns on for the block; nested and
    concurrent blocks count, so it is off again only when the last one ends. The benchmarks
    time a kernel and the path it replaced in one run through these (:func:`pytorch_only`,
    ``kernels.mlp.torch_gemms`` and the like)."""

    def __init__(self):
        self._depth = 0
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return self._depth > 0

    @contextmanager
    def on(self):
        with self._lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1


_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_reason: str | None = None
_tried = False
_switched_off = Switch()  # on inside pytorch_only()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neuralvol" / "kernels"


def _library_path(compiler: str) -> Path:
    key = hashlib.sha256()
    for source in SOURCES + HEADERS:
        key.update(source.read_bytes())
    key.update(" ".join(FLAGS + OPENMP_FLAGS).encode())
    key.update(compiler.encode())
    key.update(f"{platform.machine()} {sys.platform}".encode())
    try:
        key.update(subprocess.run([compiler, "--version"], capture_output=True, timeout=30).stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    return _cache_dir() / f"kernels_cpu-{key.hexdigest()[:16]}.so"


def _compile(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".so.tmp", dir=target.parent)
    os.close(fd)
    try:
        for extra in (OPENMP_FLAGS, ()):
            done = subprocess.run([compiler, *FLAGS, *extra, *map(str, SOURCES), "-o", tmp], capture_output=True,
                                  text=True, timeout=300)
            if done.returncode == 0:
                break
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise OSError(f"{Path(compiler).name} failed: {last}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    signature = [p, i64, p, i64, i32, i32, p, p, p, p, p, i32, p, i32]  # ..., scales, taps, out, threads
    for name in ("nv_hashgrid_forward", "nv_hashgrid_backward"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = signature, None
    lib.nv_grid_level.argtypes = [p, i64, i32, i32, i64, i64, p, i64, p, i64, p, i64, p, p, i64, p, p, i64, p, p,
                                  i64, i32, p, i64, i32]
    lib.nv_grid_level.restype = None
    lib.nv_grid_level_planes.argtypes = [p, i64, i32, i32, i64, i64, p, i64, p, i64, p, i64, p, p, i64, p, p, i64,
                                         i32, p, p, i32]
    lib.nv_grid_level_planes.restype = None
    lib.nv_grid_mlp_forward.argtypes = [i32, i32, p, p, p, i32, i64, i64, i64, i32, p, p, i32, p, i32]
    lib.nv_grid_mlp_forward.restype = ctypes.c_int
    lib.nv_mlp_forward.argtypes = [p, i64, i64, i32, p, p, i32, p, i32]
    lib.nv_mlp_forward.restype = ctypes.c_int
    lib.nv_postfilter_padded.argtypes = [p, i64, i64, i64, i32, p, ctypes.c_float, p, i32]
    lib.nv_postfilter_padded.restype = ctypes.c_int
    lib.nv_mlp_isa.argtypes, lib.nv_mlp_isa.restype = [], ctypes.c_int
    lib.nv_abi_version.argtypes, lib.nv_abi_version.restype = [], ctypes.c_int
    lib.nv_points_vector.argtypes, lib.nv_points_vector.restype = [i32], ctypes.c_int


def _load() -> ctypes.CDLL:
    if _switched_off_by_env():
        raise OSError(f"disabled by {ENV_SWITCH}={os.environ[ENV_SWITCH]}")
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C++ compiler found (set CXX, or install g++)")
    path = _library_path(compiler)
    if not path.exists():
        _compile(compiler, path)
    lib = ctypes.CDLL(str(path))
    _declare(lib)
    if lib.nv_abi_version() != ABI_VERSION:
        raise OSError(f"{path} has ABI {lib.nv_abi_version()}, expected {ABI_VERSION}")
    return lib


def _switched_off_by_env() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "off", "false", "no")


def switched_off() -> bool:
    """Whether every kernel, CPU and GPU, is off: inside :func:`pytorch_only` or by ``NEURALVOL_KERNELS=0``."""
    return bool(_switched_off) or _switched_off_by_env()


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, or None (the reason is in :func:`status`). Tried once."""
    global _library, _reason, _tried
    if _switched_off:
        return None
    if _tried:
        return _library
    with _lock:
        if not _tried:
            try:
                _library = _load()
            except (OSError, subprocess.SubprocessError) as exc:
                _library, _reason = None, str(exc)
            _tried = True
    return _library


def status() -> str:
    """One line: which path the CPU hash-grid encoding and the decoder's MLP use, and why."""
    if _switched_off:
        return "pure PyTorch (inside kernels.build.pytorch_only())"
    lib = library()
    if lib is None:
        return f"pure PyTorch ({_reason})"
    return f"C++ kernels (hash grid; decode MLP: {MLP_ISA[lib.nv_mlp_isa()]})"


def pytorch_only():
    """Inside, every caller takes the pure-PyTorch path (benchmarks time both in one run)."""
    return _switched_off.on()


def reset() -> None:
    """Forget the loaded state, so the next call tries again (tests switch the kernels off)."""
    global _library, _reason, _tried
    with _lock:
        _library, _reason, _tried = None, None, False
