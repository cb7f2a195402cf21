"""``NeuralVolumeProbe``: evaluate a ``.nvc`` neural field at any dataset's points.

Only a continuous representation can do this: the field is sampled at the input's
physical point coordinates (a slice plane, a line, an unstructured mesh, an image of any
resolution and bounds). Points outside the volume's bounds get NaN and 0 in the valid
mask array, as ``vtkProbeFilter`` does with ``vtkValidPointMask``.
"""
from __future__ import annotations

import numpy as np
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonDataModel import vtkDataObject, vtkDataSet
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as SDDP

from . import _common

#: points sampled per call (unit of progress reports and abort checks)
SAMPLE_CHUNK_POINTS = 1 << 20


class NeuralVolumeProbe(_common.NvcFileMixin, VTKPythonAlgorithmBase):
    """Adds the neural field of ``FileName`` as a point-data array to any ``vtkDataSet``.

    Properties: ``FileName``; ``ResultArrayName`` (empty: the file's array name);
    ``ValidMaskArrayName`` (default ``vtkValidPointMask``; empty: no mask array).
    For series files the model is picked by the requested time (``UPDATE_TIME_STEP``);
    when the input has no time steps, the file's are published.
    """

    def __init__(self):
        VTKPythonAlgorithmBase.__init__(self, nInputPorts=1, inputType="vtkDataSet",
                                        nOutputPorts=1, outputType="vtkDataSet")
        self._filename = None
        self._result = ""
        self._mask = "vtkValidPointMask"
        self._models = None
        self._models_key = None
        self.last_error = None
        self.sampled_points = 0

    def SetResultArrayName(self, name):
        if (name or "") != self._result:
            self._result = name or ""
            self.Modified()

    def SetValidMaskArrayName(self, name):
        if (name or "") != self._mask:
            self._mask = name or ""
            self.Modified()

    def _open(self):
        return self._open_models()[0]

    def _times(self):
        models = self._models or []
        if len(models) > 1 and all(m.time is not None for m in models):
            return [float(m.time) for m in models]
        return None

    # ---------------------------------------------------------------- pipeline passes
    def RequestDataObject(self, request, inInfoVec, outInfoVec):
        inp = vtkDataObject.GetData(inInfoVec[0], 0)
        if inp is None:
            return 0
        out = vtkDataObject.GetData(outInfoVec, 0)
        if out is None or out.GetClassName() != inp.GetClassName():
            out = inp.NewInstance()
            outInfoVec.GetInformationObject(0).Set(vtkDataObject.DATA_OBJECT(), out)
        return 1

    def RequestInformation(self, request, inInfoVec, outInfoVec):
        self.last_error = None
        try:
            self._open()
        except _common.expected_errors() as exc:
            _common.report_error(self, str(exc))
            return 0
        inp = inInfoVec[0].GetInformationObject(0)
        out = outInfoVec.GetInformationObject(0)
        times = self._times()
        if times and not inp.Has(SDDP.TIME_STEPS()):
            out.Set(SDDP.TIME_STEPS(), times, len(times))
            out.Set(SDDP.TIME_RANGE(), [min(times), max(times)], 2)
        return 1

    def _pick_model(self, info):
        models = self._models
        times = self._times()
        if not times or not info.Has(SDDP.UPDATE_TIME_STEP()):
            return models[0]
        t = info.Get(SDDP.UPDATE_TIME_STEP())
        before = [i for i, ti in enumerate(times) if ti <= t + 1e-12 * max(1.0, abs(t))]
        if not before:
            return models[int(np.argmin(times))]
        return models[max(before, key=lambda i: times[i])]

    def RequestData(self, request, inInfoVec, outInfoVec):
        inp = vtkDataSet.GetData(inInfoVec[0], 0)
        out = vtkDataSet.GetData(outInfoVec, 0)
        out.ShallowCopy(inp)
        self.sampled_points = 0
        try:
            self._open()
            vol = self._pick_model(outInfoVec.GetInformationObject(0))
            points = _common.dataset_points(inp)
            n = len(points)
            # (N,) for a scalar field, (N, C) for C components
            values = np.empty((n,) if vol.n_components == 1 and vol.component_names is None
                              else (n, vol.n_components), dtype=np.float64)
            _common.set_progress_text(self, "Sampling neural field")
            with vol.sampling():   # the chunks share a filtered file's block of original nodes
                for start in range(0, n, SAMPLE_CHUNK_POINTS):
                    if _common.check_abort(self):
                        _common.report_error(self, "sampling cancelled")
                        return 0
                    stop = min(n, start + SAMPLE_CHUNK_POINTS)
                    values[start:stop] = vol.sample(points[start:stop])
                    self.sampled_points = stop
                    self.UpdateProgress(stop / n)
        except _common.expected_errors() as exc:
            _common.report_error(self, str(exc))
            return 0
        name = self._result or vol.array_name
        pd = out.GetPointData()
        pd.AddArray(_common.numpy_to_vtk(values, name, values.shape[1] if values.ndim == 2 else 1,
                                         vol.component_names))
        pd.SetActiveScalars(name)
        if self._mask:
            mask = (~np.isnan(values if values.ndim == 1 else values[:, 0])).astype(np.uint8)
            arr = _common.numpy_to_vtk(mask, self._mask)
            pd.AddArray(arr)
        self.UpdateProgress(1.0)
        return 1
