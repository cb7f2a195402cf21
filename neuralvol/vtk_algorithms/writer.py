"""``NeuralVolumeWriter``: compress one point-data array of a ``vtkImageData`` to ``.nvc``.

Pure VTK (``vtkmodules``). The codec's options map to properties where 0 (or "") means
"the codec's default"; fitting progress goes to ``UpdateProgress``/``SetProgressText``
and the VTK abort flag cancels the fit (nothing is written: the core saves atomically).

>>> w = NeuralVolumeWriter()                                   # doctest: +SKIP
>>> w.SetInputConnection(vti_reader.GetOutputPort())           # doctest: +SKIP
>>> w.SetFileName("out.nvc"); w.SetArrayName("density"); w.Write()   # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as SDDP

from . import _common


def image_to_array(image: vtkImageData, name: str | None = None):
    """(values [z, y, x] or [z, y, x, C], array name, spacing, origin) of a point-data
    array of ``image`` (``C`` > 1 for a vector or multi-component array).

    ``name`` None picks the active scalars, else the first point-data array. The origin
    is the physical position of the first point of the extent."""
    pd = image.GetPointData()
    if name:
        arr = pd.GetAbstractArray(name)
        if arr is None:
            names = [pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays())]
            raise ValueError(f"the input has no point-data array {name!r} "
                             f"(point arrays: {', '.join(map(repr, names)) or 'none'})")
    else:
        arr = pd.GetScalars()
        if arr is None and pd.GetNumberOfArrays() > 0:
            arr = pd.GetArray(0)
        if arr is None:
            raise ValueError("the input image has no point-data array to compress")
    if not arr.IsA("vtkDataArray"):
        raise ValueError(f"point array {arr.GetName()!r} is not numeric")
    n_comp = arr.GetNumberOfComponents()
    ext = image.GetExtent()
    nx, ny, nz = _common.extent_dims(ext)
    values = _common.vtk_to_numpy(arr).reshape((nz, ny, nx) if n_comp == 1 else (nz, ny, nx, n_comp))
    spacing = tuple(float(s) for s in image.GetSpacing())
    origin = tuple(float(o) + ext[2 * i] * spacing[i]
                   for i, o in enumerate(image.GetOrigin()))
    return values, arr.GetName() or "values", spacing, origin


def component_names(image: vtkImageData, name: str | None):
    """VTK's component names of a multi-component point array (None if unnamed or scalar)."""
    pd = image.GetPointData()
    arr = pd.GetAbstractArray(name) if name else (pd.GetScalars() or pd.GetArray(0))
    if arr is None or arr.GetNumberOfComponents() == 1:
        return None
    names = [arr.GetComponentName(c) or "" for c in range(arr.GetNumberOfComponents())]
    return names if any(names) else None


class NeuralVolumeWriter(VTKPythonAlgorithmBase):
    """Writes a point-data array of its ``vtkImageData`` input as a ``.nvc`` file.

    Properties: ``FileName``, ``ArrayName`` (empty: the active scalars), a size target:
    ``TargetSize`` (bytes) beats ``BitsPerVoxel`` beats ``TargetRatio`` (0 = unset;
    none set = the codec's default ratio of 100), plus ``TargetPSNR``
    (dB), ``TimeBudget`` (s), ``Steps``, ``Device`` ("auto"/"cpu"/"cuda"), ``Seed``
    and ``WriteAllTimeSteps`` (every input time step as one model of a series file),
    ``MaxError`` (< 0: none; a point-wise bound on the original grid), region importance by
    ``ImportanceFileName`` (a ``.npy`` weight volume) or one ``ROI`` box (x0 x1 y0 y1 z0 z1,
    empty = off) weighted ``ROIWeight``.
    ``Write()`` returns 1 on success, 0 on failure (the error is reported the VTK way
    and kept on ``last_error``). ``last_volume`` is the compressed model(s).
    """

    def __init__(self):
        VTKPythonAlgorithmBase.__init__(self, nInputPorts=1, inputType="vtkImageData",
                                        nOutputPorts=0)
        self._filename = None
        self._array = ""
        self._ratio = 0.0
        self._bpv = 0.0
        self._size = 0
        self._psnr = 0.0
        self._budget = 0.0
        self._steps = 0
        self._device = "auto"
        self._precision = "quantised"
        self._post_filter = True            # neuralvol.postfilter: stored where it pays
        self._seed = 0
        self._max_error = -1.0              # < 0: no point-wise bound
        self._importance_file = ""          # a .npy weight volume, [z, y, x] like the input
        self._roi = (0, -1, 0, -1, 0, -1)   # an empty extent: no ROI box
        self._roi_weight = 10.0
        self._all_times = False
        self._array_names = []       # several arrays, one model each (empty: ArrayName)
        self._previous = {}          # array name -> the last time step's volume (warm start)
        self._times = None
        self._time_index = 0
        self._collected = []
        self._ok = False
        self.last_error = None
        self.last_volume = None

    # ---------------------------------------------------------------- properties
    def _set(self, attr, value):
        if getattr(self, attr) != value:
            setattr(self, attr, value)
            self.Modified()

    def SetFileName(self, name):
        self._set("_filename", None if not name else str(name))

    def GetFileName(self):
        return self._filename

    def SetArrayName(self, name):
        self._set("_array", name or "")

    def GetArrayName(self):
        return self._array

    def SetArrayNames(self, names):
        """Several point arrays, one model each in the same file (ParaView's array list)."""
        self._set("_array_names", [str(n) for n in (names or ()) if n])

    def GetArrayNames(self):
        return list(self._array_names)

    def SetTargetRatio(self, ratio):
        self._set("_ratio", float(ratio))

    def SetBitsPerVoxel(self, bpv):
        self._set("_bpv", float(bpv))

    def SetTargetSize(self, nbytes):
        self._set("_size", int(nbytes))

    def SetTargetPSNR(self, psnr):
        self._set("_psnr", float(psnr))

    def SetTimeBudget(self, seconds):
        self._set("_budget", float(seconds))

    def SetSteps(self, steps):
        self._set("_steps", int(steps))

    def SetDevice(self, device):
        self._set("_device", str(device or "auto"))

    def SetPrecision(self, precision):
        """``quantised`` (default: entropy-coded weights) or ``float16`` (format version 1)."""
        self._set("_precision", str(precision or "quantised"))

    def GetPrecision(self):
        return self._precision

    def SetPostFilter(self, flag):
        """Fit and store a 3x3x3 or 5x5x5 post filter where it measures better (default on);
        off, other resolutions and probes evaluate the network only at their own points."""
        self._set("_post_filter", bool(flag))

    def GetPostFilter(self):
        return self._post_filter

    def SetSeed(self, seed):
        self._set("_seed", int(seed))

    def SetMaxError(self, max_error):
        """Point-wise bound |decoded - original| <= E on the original grid; < 0 (default): none."""
        self._set("_max_error", float(max_error))

    def SetImportanceFileName(self, name):
        """A ``.npy`` weight volume of the input's [z, y, x] shape ("" : none)."""
        self._set("_importance_file", str(name or ""))

    def SetROI(self, x0, x1=None, y0=None, y1=None, z0=None, z1=None):
        """An inclusive index box fitted with ``ROIWeight``; an empty extent (x1 < x0) turns it off."""
        box = tuple(int(v) for v in (x0 if x1 is None else (x0, x1, y0, y1, z0, z1)))
        self._set("_roi", box)

    def SetROIWeight(self, weight):
        self._set("_roi_weight", float(weight))

    def SetWriteAllTimeSteps(self, flag):
        self._set("_all_times", bool(flag))

    def Write(self):
        """Compress and write now; 1 on success, 0 on failure."""
        self.Modified()
        self._ok = False
        self.Update()
        return 1 if self._ok else 0

    def codec_options(self) -> dict:
        """Keyword arguments for ``neuralvol.compress`` from the properties.

        One size target is passed: ``TargetSize`` if set, else ``BitsPerVoxel`` if set,
        else ``TargetRatio`` if set, else the codec's default (ratio 100)."""
        opts = {"seed": self._seed, "device": self._device, "precision": self._precision,
                "post_filter": self._post_filter}
        if self._size:
            opts["size"] = self._size
        elif self._bpv:
            opts["bpv"] = self._bpv
        elif self._ratio:
            opts["ratio"] = self._ratio
        if self._psnr:
            opts["psnr"] = self._psnr
        if self._budget:
            opts["time_budget"] = self._budget
        if self._steps:
            opts["steps"] = self._steps
        if self._max_error >= 0:
            opts["max_error"] = self._max_error
        if self._importance_file:
            try:
                opts["importance"] = np.load(self._importance_file, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read the importance volume {self._importance_file!r}: {exc}") from None
        if all(self._roi[2 * a] <= self._roi[2 * a + 1] for a in range(3)):
            opts["roi"] = [list(self._roi)]
            opts["roi_weight"] = self._roi_weight
        return opts

    # ---------------------------------------------------------------- pipeline passes
    def RequestInformation(self, request, inInfoVec, outInfoVec):
        info = inInfoVec[0].GetInformationObject(0)
        self._times = None
        if self._all_times and info.Has(SDDP.TIME_STEPS()):
            self._times = list(info.Get(SDDP.TIME_STEPS()))
        return 1

    def RequestUpdateExtent(self, request, inInfoVec, outInfoVec):
        info = inInfoVec[0].GetInformationObject(0)
        if info.Has(SDDP.WHOLE_EXTENT()):
            info.Set(SDDP.UPDATE_EXTENT(), *info.Get(SDDP.WHOLE_EXTENT()))
        if self._times:
            info.Set(SDDP.UPDATE_TIME_STEP(), self._times[self._time_index])
        return 1

    def RequestData(self, request, inInfoVec, outInfoVec):
        self.last_error = None
        image = vtkImageData.GetData(inInfoVec[0], 0)
        try:
            if not self._filename:
                raise ValueError("no file name set")
            nv = _common.import_core()
            names = self._array_names or [self._array]
            n_steps = len(self._times) if self._times else 1
            label = f" (time step {self._time_index + 1}/{n_steps})" if self._times else ""

            def progress(p):
                frac = (self._time_index + float(p.fraction)) / n_steps
                self.UpdateProgress(min(max(frac, 0.0), 1.0))
                psnr = "" if p.psnr is None else f", PSNR {p.psnr:.1f} dB"
                _common.set_progress_text(self, f"Fitting {', '.join(n for n in names if n) or 'array'}{label}{psnr}")
                return not _common.check_abort(self)

            self.UpdateProgress(self._time_index / n_steps)
            step_volumes = []
            for requested in names:
                values, name, spacing, origin = image_to_array(image, requested)
                opts = self.codec_options()
                if self._times:
                    opts["time"] = float(self._times[self._time_index])
                    if self._time_index > 0 and name in self._previous:  # warm start (neuralvol.series)
                        opts["warm_start"] = self._previous[name]
                vol = nv.compress(np.ascontiguousarray(values), spacing=spacing, origin=origin,
                                  array_name=name, progress=progress,
                                  component_names=component_names(image, requested), **opts)
                self._previous[name] = vol
                step_volumes.append(vol)
            if self._times:
                self._collected.extend(step_volumes)
                if self._time_index + 1 < len(self._times):
                    self._time_index += 1
                    request.Set(SDDP.CONTINUE_EXECUTING(), 1)
                    return 1
                vols, self._collected, self._time_index = self._collected, [], 0
                request.Remove(SDDP.CONTINUE_EXECUTING())
                nv.save_models(self._filename, vols)
                self.last_volume = vols
            elif len(step_volumes) > 1:
                nv.save_models(self._filename, step_volumes)
                self.last_volume = step_volumes
            else:
                vol.save(self._filename)
                self.last_volume = vol
        except _common.expected_errors() as exc:
            self._collected, self._time_index, self._previous = [], 0, {}
            request.Remove(SDDP.CONTINUE_EXECUTING())
            where = f"{self._filename}: " if self._filename else ""
            _common.report_error(self, f"{where}{exc}")
            return 0
        self._ok = True
        self.UpdateProgress(1.0)
        return 1

