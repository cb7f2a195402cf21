"""neuralvol ParaView plugin: open, resample and write ``.nvc`` neural volumes.

Load it with Tools > Manage Plugins > Load New (this file), ``LoadPlugin(path)`` in
pvpython, or automatically with ``PV_PLUGIN_PATH`` / ``PV_PLUGIN_CONFIG_FILE``
(see docs/PARAVIEW.md). It adds:

- **Neural Volume Reader** for ``*.nvc`` (File > Open, ``OpenDataFile``): decodes only
  what the view asks for, at any resolution;
- **Neural Volume Writer** (File > Save Data, ``SaveData("x.nvc", ...)``);
- **Neural Volume Probe** (Filters > neuralvol): samples the neural field at any
  dataset's points.

The classes are thin: all logic lives in :mod:`neuralvol.vtk_algorithms`. Torch must be
importable in ParaView's Python: set ``PV_VENV`` to the venv made by
``.ci/setup-paraview.sh`` and put ``plugin/shim`` on ``PYTHONPATH``.
"""
import inspect
import os
import sys

# Debian's ParaView 5.11 on Python 3.11 imports inspect.getargspec (removed in 3.11).
# plugin/shim/sitecustomize.py restores it before ParaView loads any plugin; this line
# only covers scripts that import this module directly.
if not hasattr(inspect, "getargspec"):
    inspect.getargspec = inspect.getfullargspec

from paraview.util.vtkAlgorithm import smdomain, smhint, smproperty, smproxy  # noqa: E402

try:
    import neuralvol
except ImportError:
    # a checkout: the package sits beside plugin/
    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(os.path.join(_root, "neuralvol")) and _root not in sys.path:
        sys.path.insert(0, _root)
# Importing neuralvol and its VTK layer needs numpy only; torch is imported when a file
# is read, and its absence is then a readable error in ParaView's Output Messages.
try:
    import neuralvol
    from neuralvol import vtk_algorithms as _alg
except ImportError as _exc:
    raise ImportError(
        f"the neuralvol plugin needs neuralvol and numpy<2 in ParaView's Python, and torch "
        f"to read files ({_exc}). Start ParaView with PV_VENV=/path/to/.venv-paraview and "
        f"PYTHONPATH=/path/to/neuralvol/plugin/shim (see docs/PARAVIEW.md).") from _exc

paraview_plugin_name = "neuralvol"
paraview_plugin_version = neuralvol.__version__

_NVC = dict(extensions="nvc", file_description="neuralvol neural volume (*.nvc)")


def _choice_xml(name, command, values, documentation):
    """An advanced drop-down string property; the first of ``values`` is its default."""
    options = "".join(f'<String value="{v}"/>' for v in values)
    return f"""
    <StringVectorProperty name="{name}" label="{name}" command="{command}"
                          number_of_elements="1" default_values="{values[0]}"
                          panel_visibility="advanced">
      <StringListDomain name="list">{options}</StringListDomain>
      <Documentation>{documentation}</Documentation>
    </StringVectorProperty>"""


def _device_xml(name="Device", command="SetDevice"):
    return _choice_xml(name, command, ("auto", "cpu", "cuda"),
                       "Where to fit the network: auto (CUDA if present), cpu or cuda.")


# ------------------------------------------------------------------------------- reader
@smproxy.reader(name="NeuralVolumeReader", label="Neural Volume Reader",
                support_reload=False, **_NVC)
class NeuralVolumeReader(_alg.NeuralVolumeReader):
    """Decodes a ``.nvc`` file to an image, only the requested extent, at any resolution."""

    @smproperty.stringvector(name="FileName", panel_visibility="never")
    @smdomain.filelist()
    @smhint.filechooser(**_NVC)
    def SetFileName(self, name):
        _alg.NeuralVolumeReader.SetFileName(self, name)

    @smproperty.doublevector(name="ResolutionScale", label="Resolution Scale",
                             default_values=1.0)
    @smdomain.doublerange(min=0.1, max=4.0)
    @smdomain.xml("<Documentation>Output grid density relative to the original: 2 halves "
                  "the spacing, 0.5 doubles it. Ignored when Output Dimensions are set."
                  "</Documentation>")
    def SetResolutionScale(self, scale):
        _alg.NeuralVolumeReader.SetResolutionScale(self, scale)

    @smproperty.intvector(name="OutputDimensions", label="Output Dimensions",
                          default_values=[0, 0, 0], panel_visibility="advanced")
    @smdomain.xml("<Documentation>Explicit output grid size (x y z) over the same bounds; "
                  "0 0 0 uses the Resolution Scale.</Documentation>")
    def SetOutputDimensions(self, nx, ny, nz):
        _alg.NeuralVolumeReader.SetOutputDimensions(self, nx, ny, nz)

    @smproperty.intvector(name="RegionOfInterest", label="Region Of Interest",
                          default_values=[0, -1, 0, -1, 0, -1], panel_visibility="advanced")
    @smdomain.xml("<Documentation>Index extent (x0 x1 y0 y1 z0 z1, inclusive) of the output "
                  "grid to decode; an empty extent (x1 &lt; x0) means the whole volume."
                  "</Documentation>")
    def SetRegionOfInterest(self, x0, x1, y0, y1, z0, z1):
        _alg.NeuralVolumeReader.SetRegionOfInterest(self, x0, x1, y0, y1, z0, z1)

    @smproperty.xml("""
    <IntVectorProperty name="FloatOutput" label="Float Output" command="SetFloatOutput"
                       number_of_elements="1" default_values="0" panel_visibility="advanced">
      <BooleanDomain name="bool"/>
      <Documentation>Produce float32 values instead of rounding to the original type.</Documentation>
    </IntVectorProperty>""")
    def SetFloatOutput(self, flag):
        _alg.NeuralVolumeReader.SetFloatOutput(self, flag)

    # "auto" here, float32 in the VTK layer and the CLI: a view wants the fast decode, and
    # "auto" takes bfloat16 only where it changes the values by at most 2.5 % of the model's
    # own error (neuralvol.evaluate.mlp_dtype). The embryo 256^3 decode, 2 cores:
    # 1.38 s in float32, 0.93-1.05 s in bfloat16 (stop 22's speed.py).
    @smproperty.xml(_choice_xml("Compute", "SetCompute", ("auto", "float32", "bfloat16"),
                                "The network's arithmetic. auto: bfloat16 (faster on CPUs with AVX512-BF16 "
                                "or AMX) where it is measured to change the values by at most 2.5 % of the "
                                "model's own error, else float32. float32: the values the encoder measured."))
    def SetCompute(self, compute):
        _alg.NeuralVolumeReader.SetCompute(self, compute)

    @smproperty.doublevector(name="TimestepValues", information_only="1",
                             si_class="vtkSITimeStepsProperty")
    def GetTimestepValues(self):
        return _alg.NeuralVolumeReader.GetTimestepValues(self)

    @smproperty.dataarrayselection(name="Fields")
    def GetArraySelection(self):
        return _alg.NeuralVolumeReader.GetArraySelection(self)


# ------------------------------------------------------------------------------- writer
@smproxy.writer(name="NeuralVolumeWriter", label="Neural Volume Writer",
                support_reload=False, **_NVC)
@smproperty.input(name="Input", port_index=0)
@smdomain.datatype(dataTypes=["vtkImageData"], composite_data_supported=False)
@smdomain.xml('<InputArrayDomain name="input_array" attribute_type="point"/>')
class NeuralVolumeWriter(_alg.NeuralVolumeWriter):
    """Compresses point-data arrays (scalar or vector) of an image into a ``.nvc`` file."""

    @smproperty.stringvector(name="FileName", panel_visibility="never")
    @smdomain.filelist()
    @smhint.filechooser(**_NVC)
    def SetFileName(self, name):
        _alg.NeuralVolumeWriter.SetFileName(self, name)

    @smproperty.xml("""
    <StringVectorProperty name="ArrayName" label="Array Name" command="SetArrayName"
                          number_of_elements="1" animateable="0">
      <ArrayListDomain name="array_list" attribute_type="Scalars" input_domain_name="input_array">
        <RequiredProperties><Property name="Input" function="Input"/></RequiredProperties>
      </ArrayListDomain>
      <Documentation>The point-data array to compress (scalar, vector or any number of
      components); ignored when Arrays lists any.</Documentation>
    </StringVectorProperty>""")
    def SetArrayName(self, name):
        _alg.NeuralVolumeWriter.SetArrayName(self, name)

    @smproperty.xml("""
    <StringVectorProperty name="Arrays" label="Arrays" command="AddArrayName"
                          clean_command="ClearArrayNames" repeat_command="1"
                          number_of_elements_per_command="1" animateable="0">
      <ArrayListDomain name="array_list" attribute_type="Scalars" input_domain_name="input_array">
        <RequiredProperties><Property name="Input" function="Input"/></RequiredProperties>
      </ArrayListDomain>
      <Documentation>Several point-data arrays to compress into one file (one model each;
      the reader shows them as point arrays). Empty: Array Name.</Documentation>
    </StringVectorProperty>""")
    def AddArrayName(self, name):
        _alg.NeuralVolumeWriter.SetArrayNames(self, self.GetArrayNames() + [name])

    def ClearArrayNames(self):
        _alg.NeuralVolumeWriter.SetArrayNames(self, [])

    @smproperty.doublevector(name="TargetRatio", label="Target Ratio",
                             default_values=100.0)
    @smdomain.doublerange(min=1, max=2000)
    @smdomain.xml("<Documentation>Compression ratio: original bytes / file bytes. "
                  "Ignored when Bits Per Voxel or Target Size is set.</Documentation>")
    def SetTargetRatio(self, ratio):
        _alg.NeuralVolumeWriter.SetTargetRatio(self, ratio)

    @smproperty.doublevector(name="BitsPerVoxel", label="Bits Per Voxel", default_values=0.0,
                             panel_visibility="advanced")
    @smdomain.xml("<Documentation>File size as bits per voxel (0: unset; beats the ratio)."
                  "</Documentation>")
    def SetBitsPerVoxel(self, bpv):
        _alg.NeuralVolumeWriter.SetBitsPerVoxel(self, bpv)

    @smproperty.intvector(name="TargetSize", label="Target Size", default_values=0,
                          panel_visibility="advanced")
    @smdomain.xml("<Documentation>File size in bytes (0: unset; beats ratio and bits per "
                  "voxel).</Documentation>")
    def SetTargetSize(self, nbytes):
        _alg.NeuralVolumeWriter.SetTargetSize(self, nbytes)

    @smproperty.doublevector(name="TargetPSNR", label="Target PSNR", default_values=0.0)
    @smdomain.xml("<Documentation>Target PSNR in dB (0: none). With no size target set: the "
                  "smallest file that reaches it (a search over the ratio within the time budget); "
                  "with one: stop fitting once it is reached.</Documentation>")
    def SetTargetPSNR(self, psnr):
        _alg.NeuralVolumeWriter.SetTargetPSNR(self, psnr)

    @smproperty.doublevector(name="TimeBudget", label="Time Budget", default_values=60.0)
    @smdomain.xml("<Documentation>Wall-clock seconds allowed for fitting (0: no limit when "
                  "Steps is set).</Documentation>")
    def SetTimeBudget(self, seconds):
        _alg.NeuralVolumeWriter.SetTimeBudget(self, seconds)

    @smproperty.intvector(name="Steps", label="Steps", default_values=0,
                          panel_visibility="advanced")
    @smdomain.xml("<Documentation>Fixed number of optimisation steps (0: use the time "
                  "budget).</Documentation>")
    def SetSteps(self, steps):
        _alg.NeuralVolumeWriter.SetSteps(self, steps)

    @smproperty.xml(_device_xml())
    def SetDevice(self, device):
        _alg.NeuralVolumeWriter.SetDevice(self, device)

    @smproperty.xml("""
    <StringVectorProperty name="Precision" label="Precision" command="SetPrecision"
                          number_of_elements="1" default_values="quantised" panel_visibility="advanced">
      <StringListDomain name="list"><String value="quantised"/><String value="float16"/></StringListDomain>
      <Documentation>quantised: entropy-coded integer weights sized to fill the budget (best
      quality for the bytes); float16: plain half floats, readable by neuralvol before 0.2.</Documentation>
    </StringVectorProperty>""")
    def SetPrecision(self, precision):
        _alg.NeuralVolumeWriter.SetPrecision(self, precision)

    @smproperty.xml("""
    <IntVectorProperty name="PostFilter" label="Post Filter" command="SetPostFilter"
                       number_of_elements="1" default_values="1" panel_visibility="advanced">
      <BooleanDomain name="bool"/>
      <Documentation>Store a 3x3x3 or 5x5x5 filter of the network's output where it measures
      better (up to ~2 dB on smooth simulation fields). Off: a file that decodes other
      resolutions and probes without also evaluating the original grid's nodes around
      them.</Documentation>
    </IntVectorProperty>""")
    def SetPostFilter(self, flag):
        _alg.NeuralVolumeWriter.SetPostFilter(self, flag)

    @smproperty.intvector(name="Seed", default_values=0, panel_visibility="advanced")
    def SetSeed(self, seed):
        _alg.NeuralVolumeWriter.SetSeed(self, seed)

    @smproperty.doublevector(name="MaxError", label="Max Error", default_values=-1.0)
    @smdomain.xml("<Documentation>Point-wise error bound: |decoded - original| &lt;= this at every "
                  "voxel of the original grid (voxels the network misses are corrected in the file; "
                  "0 on integer data: lossless). Negative: no bound. Other resolutions are not "
                  "bounded.</Documentation>")
    def SetMaxError(self, max_error):
        _alg.NeuralVolumeWriter.SetMaxError(self, max_error)

    @smproperty.stringvector(name="ImportanceFileName", label="Importance File", default_values="",
                             panel_visibility="advanced")
    @smdomain.xml("<Documentation>A .npy weight volume of the image's [z, y, x] shape (weights "
                  "&gt;= 0): the fit spends its bytes where they are high. Empty: none.</Documentation>")
    def SetImportanceFileName(self, name):
        _alg.NeuralVolumeWriter.SetImportanceFileName(self, name)

    @smproperty.intvector(name="ROI", label="ROI", number_of_elements=6,
                          default_values=[0, -1, 0, -1, 0, -1], panel_visibility="advanced")
    @smdomain.xml("<Documentation>An inclusive index box x0 x1 y0 y1 z0 z1 fitted with ROI Weight "
                  "against 1 elsewhere; an empty extent (x1 &lt; x0) turns it off.</Documentation>")
    def SetROI(self, x0, x1, y0, y1, z0, z1):
        _alg.NeuralVolumeWriter.SetROI(self, x0, x1, y0, y1, z0, z1)

    @smproperty.doublevector(name="ROIWeight", label="ROI Weight", default_values=10.0,
                             panel_visibility="advanced")
    def SetROIWeight(self, weight):
        _alg.NeuralVolumeWriter.SetROIWeight(self, weight)

    @smproperty.xml("""
    <IntVectorProperty name="WriteAllTimeSteps" label="Write All Time Steps"
                       command="SetWriteAllTimeSteps" number_of_elements="1" default_values="0">
      <BooleanDomain name="bool"/>
      <Documentation>Compress every time step of the input into one series file (one model
      per step with its time value; each step's fit starts from the previous step's).</Documentation>
    </IntVectorProperty>""")
    def SetWriteAllTimeSteps(self, flag):
        _alg.NeuralVolumeWriter.SetWriteAllTimeSteps(self, flag)


# ------------------------------------------------------------------------------- probe
@smproxy.filter(name="NeuralVolumeProbe", label="Neural Volume Probe", support_reload=False)
@smhint.xml('<ShowInMenu category="neuralvol" />')
@smproperty.input(name="Input", port_index=0)
@smdomain.datatype(dataTypes=["vtkDataSet"], composite_data_supported=False)
class NeuralVolumeProbe(_alg.NeuralVolumeProbe):
    """Samples a ``.nvc`` neural field at the input's points (any resolution or shape)."""

    @smproperty.stringvector(name="FileName", label="File Name")
    @smdomain.filelist()
    @smhint.filechooser(**_NVC)
    def SetFileName(self, name):
        _alg.NeuralVolumeProbe.SetFileName(self, name)

    @smproperty.stringvector(name="ResultArrayName", label="Result Array Name",
                             default_values="", panel_visibility="advanced")
    def SetResultArrayName(self, name):
        _alg.NeuralVolumeProbe.SetResultArrayName(self, name)

    @smproperty.stringvector(name="ValidMaskArrayName", label="Valid Mask Array Name",
                             default_values="vtkValidPointMask", panel_visibility="advanced")
    def SetValidMaskArrayName(self, name):
        _alg.NeuralVolumeProbe.SetValidMaskArrayName(self, name)
