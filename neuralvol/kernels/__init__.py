"""Compiled kernels for the hot loops (C++ on CPU, Triton on CUDA), each with a pure-PyTorch fallback.

* :mod:`.hashgrid`: the hash-grid encoding of scattered points (training batches,
  ``sample``, the probe filter), fused gather + trilinear weights, forward and backward.
* :mod:`.hashgrid_triton`: the same encoding on CUDA tensors as Triton kernels (forward
  for points and grid voxels, deterministic backward), used when Triton is importable.
* :mod:`.mlp`: the decoder's MLP (inference) on CPU, every layer of a tile of voxels fused,
  fp32 (AVX-512) or bf16 (AVX512-BF16); elsewhere torch's GEMMs.
* :mod:`.build`: compiles the C++ sources once per machine and loads them with ctypes;
  ``NEURALVOL_KERNELS=0`` (or :func:`build.pytorch_only`) switches every kernel off; :func:`build.status` says which path
  is in use.

Regular grids on CPU do not come here: :class:`~neuralvol.encodings.hashgrid.SeparableGrid`
decodes them separably, which beats any per-voxel kernel there. On CUDA the separable
path's many small operations are launch-bound, and the Triton kernel encodes grid voxels.
"""
