"""Compiled CPU kernels for the hot loops, each with a pure-PyTorch fallback.

* :mod:`.hashgrid`: the hash-grid encoding of scattered points (training batches,
  ``sample``, the probe filter), fused gather + trilinear weights, forward and backward.
* :mod:`.build`: compiles the C++ sources once per machine and loads them with ctypes;
  ``NEURALVOL_KERNELS=0`` switches every kernel off; :func:`build.status` says which path
  is in use.

Regular grids do not come here: :class:`~neuralvol.encodings.hashgrid.SeparableGrid`
decodes them separably, which beats any per-voxel kernel.
"""
