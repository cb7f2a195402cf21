"""Start-up fixes for ParaView's embedded Python, for the neuralvol plugin.

Put this folder on ``PYTHONPATH`` before starting ``paraview``, ``pvpython`` or
``pvbatch``; Python imports ``sitecustomize`` at start-up, before ParaView loads any
plugin (``LoadPlugin``, ``PV_PLUGIN_PATH``/``PV_PLUGIN_CONFIG_FILE`` auto-load and the GUI
Plugin Manager alike). It

1. restores ``inspect.getargspec`` (removed in Python 3.11), which Debian's ParaView 5.11
   still imports in ``paraview/detail/pythonalgorithm.py`` — without it no Python plugin
   loads;
2. activates the venv named by ``PV_VENV`` (torch, numpy<2, neuralvol), like
   ``import paraview.web.venv`` does in a script, so that the GUI and auto-loaded
   plugins find torch too;
3. then runs the sitecustomize this one shadows (Debian's, if any).

Harmless in any other Python: each step only acts when needed.
"""
import inspect
import os
import sys

if not hasattr(inspect, "getargspec"):
    inspect.getargspec = inspect.getfullargspec


def _activate_pv_venv():
    base = os.environ.get("PV_VENV")
    if not base or not os.path.isdir(base) or os.environ.get("VIRTUAL_ENV") == base:
        return
    if os.path.realpath(sys.prefix) == os.path.realpath(base):
        return  # this interpreter is the venv's own python
    import site
    ver = "python%d.%d" % sys.version_info[:2]
    libs = os.path.join(base, "lib", ver, "site-packages")
    if not os.path.isdir(libs):
        return
    before = len(sys.path)
    site.addsitedir(libs)  # honours .pth files (the neuralvol checkout link)
    sys.path[:] = sys.path[before:] + sys.path[:before]  # venv first, as paraview.web.venv


_activate_pv_venv()


def _chain_shadowed_sitecustomize():
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        path = os.path.join(entry or ".", "sitecustomize.py")
        if os.path.abspath(entry or ".") != here and os.path.isfile(path):
            try:
                with open(path) as f:
                    code = compile(f.read(), path, "exec")
                exec(code, {"__name__": "sitecustomize_shadowed", "__file__": path})
            except Exception:  # a broken system hook must not stop ParaView
                pass
            return


_chain_shadowed_sitecustomize()
