"""Errors the package raises on purpose.

Every message is one line that names the problem and, where it can, how to fix it; the
CLI prints it as-is and exits with status 2.
"""


class NeuralVolError(Exception):
    """Base class of every error neuralvol raises deliberately."""


class InputError(NeuralVolError, ValueError):
    """The caller gave something we cannot compress or decode (dtype, shape, NaN, options)."""


class FormatError(NeuralVolError):
    """A `.nvc` (or `.nvinit`) file is truncated, corrupted, foreign or from a newer version."""


class FitCancelled(NeuralVolError):
    """A progress callback asked to stop fitting; nothing was written."""
