"""The library version, in a module that imports nothing, so that ``neuralvol.__version__``
and the build (``setup.cfg``'s ``attr:``) read it without importing torch."""

LIBRARY_VERSION = "0.3.0"
