"""The `.nvc` bitstream: everything that decides the bytes of a file.

* :mod:`.container` - magic, preamble, JSON or compact header, CRC-checked sections;
* :mod:`.compact_header` - the binary header of format version 3;
* :mod:`.schema` - the header's model entries <-> :class:`neuralvol.NeuralVolume`;
* :mod:`.entropy`, :mod:`.adaptive_coding` - the lossless symbol coders;
* :mod:`.budget` - the byte budget: header planning, slack, rate control;
* :mod:`.atomic_io` - atomic writes and checked reads of files.

The layout is documented in ``docs/FORMAT.md``.
"""
