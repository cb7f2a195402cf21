"""The VTK reader on a bricked file: pieces decode only the bricks their extent touches."""
import numpy as np
import pytest

pytest.importorskip("vtkmodules.vtkCommonDataModel")

import neuralvol as nv  # noqa: E402
from neuralvol.bricks import compress_bricked  # noqa: E402
from neuralvol.vtk_algorithms import NeuralVolumeReader  # noqa: E402
from vtk_images import image_values  # noqa: E402


@pytest.fixture(scope="module")
def bricked_nvc(headsq, tmp_path_factory):
    """32^3 of the CT head in 2 x 2 x 4 bricks (z cores of 8), overlap 2."""
    data = np.ascontiguousarray(headsq[20:52, 16:48, 16:48])
    vol = compress_bricked(data, (16, 16, 8), ratio=10, overlap=2, workers=0, steps=8, record_timings=False)
    path = tmp_path_factory.mktemp("bricks") / "ct.nvc"
    vol.save(path)
    return path


def touches(extent, piece) -> bool:
    """Whether a brick's model extent (grown by the half voxel blending may reach) meets a piece."""
    return all(extent[2 * a] - 0.5 < piece[2 * a + 1] + 1 and piece[2 * a] - 1 < extent[2 * a + 1] + 0.5
               for a in range(3))


def test_pieces_decode_only_their_bricks(bricked_nvc):
    full = nv.open(bricked_nvc).decode()
    counts = []
    for piece in range(2):
        r = NeuralVolumeReader()
        r.SetFileName(str(bricked_nvc))
        r.UpdatePiece(piece, 2, 0)
        out = r.GetOutputDataObject(0)
        ext = out.GetExtent()
        sl = (slice(ext[4], ext[5] + 1), slice(ext[2], ext[3] + 1), slice(ext[0], ext[1] + 1))
        np.testing.assert_array_equal(image_values(out), full[sl])
        vol = r._models[0]
        expected = {i for i in range(len(vol.bricks)) if touches(vol.layout.extent(i), ext)}
        assert vol.decoded_bricks == expected
        counts.append(len(vol.decoded_bricks))
    assert all(c < 16 for c in counts), counts
