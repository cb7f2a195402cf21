"""Bricked compression of large volumes: one model per brick, fitted as Dask tasks.

* :mod:`.layout`: the brick grid, overlaps and blend weights;
* :mod:`.allocate`: the global byte budget shared by difficulty;
* :mod:`.runner`: Dask (LocalCluster or a scheduler address) or in-process task runs;
* :mod:`.compress`: :func:`compress_bricked`;
* :mod:`.volume`: :class:`BrickedVolume`, decoding only the bricks a request touches;
* :mod:`.lazy`: what a brick task reads from (lazy arrays of :mod:`neuralvol.lazy_arrays` travel by reference);
* :mod:`.quality`: PSNR near brick faces against the interior.
"""
from ..lazy_arrays import MemmapArray
from .compress import AUTO_BRICK_VOXELS, DEFAULT_BRICK, DEFAULT_OVERLAP, compress_bricked, needs_bricks
from .layout import BrickLayout
from .volume import BrickedVolume, read_models

__all__ = ["compress_bricked", "BrickedVolume", "BrickLayout", "MemmapArray", "read_models", "needs_bricks",
           "AUTO_BRICK_VOXELS", "DEFAULT_BRICK", "DEFAULT_OVERLAP"]
