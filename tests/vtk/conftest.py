"""The VTK-layer tests (``neuralvol.vtk_algorithms`` with the pip ``vtk`` wheel). The
fixtures of tests/conftest.py apply here too."""
import pytest


@pytest.fixture(autouse=True)
def plain_vtk_output_window():
    """Importing pyvista routes every VTK message to Python logging, process-wide; the
    VTK-layer tests read VTK's own messages on stderr, so they get a plain output window."""
    from vtkmodules.vtkCommonCore import vtkOutputWindow
    previous = vtkOutputWindow.GetInstance()
    vtkOutputWindow.SetInstance(vtkOutputWindow())
    try:
        yield
    finally:
        vtkOutputWindow.SetInstance(previous)
