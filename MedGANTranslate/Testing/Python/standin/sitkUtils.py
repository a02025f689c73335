"""Stand-in for Slicer's ``sitkUtils``: SimpleITK images (LPS) to and from volume nodes (RAS)."""
from __future__ import annotations

import SimpleITK as sitk

import slicer
from slicer import util


def PushVolumeToSlicer(sitkimage, targetNode=None, name=None, className="vtkMRMLScalarVolumeNode"):
    if targetNode is None:
        targetNode = slicer.mrmlScene.AddNewNodeByClass(className, name or "")
    elif name:
        targetNode.SetName(name)
    targetNode.SetIJKToRASMatrix(util.vtkMatrixFromArray(util._sitk_geometry_to_ras(sitkimage)))
    util.updateVolumeFromArray(targetNode, sitk.GetArrayFromImage(sitkimage))
    targetNode.CreateDefaultDisplayNodes()
    return targetNode


def PullVolumeFromSlicer(nodeObjectOrName):
    node = util.getNode(nodeObjectOrName) if isinstance(nodeObjectOrName, str) else nodeObjectOrName
    image = sitk.GetImageFromArray(util.arrayFromVolume(node))
    util._ras_geometry_to_sitk(image, util._node_ijk_to_ras(node))
    return image
