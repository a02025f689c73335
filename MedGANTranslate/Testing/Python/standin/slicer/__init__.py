"""Stand-in for 3D Slicer's ``slicer`` package, for running the MedGANTranslate module outside Slicer.

Only the tests install it (``MedGANTranslate/Testing/Python/conftest.py`` puts this folder on ``sys.path``
for the duration of a test and removes every module it loaded afterwards). ``slicer._standin.configure``
gives each test a fresh scene and application, with a chosen Slicer version ("5.8": Python-3.9-era API
without ``slicer.packaging``; "5.12": with it), testing mode on or off, and with or without a main window.
"""
from __future__ import annotations

from typing import Dict

from ._app import qMRMLNodeComboBox, qMRMLSliceWidget, qMRMLTableView, qMRMLWidget, qSlicerApplication, qSlicerLayoutManager
from ._mrml import (
    vtkMRMLAbstractViewNode,
    vtkMRMLColorNode,
    vtkMRMLColorTableNode,
    vtkMRMLDisplayableNode,
    vtkMRMLDisplayNode,
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLLayoutNode,
    vtkMRMLNode,
    vtkMRMLPETProceduralColorNode,
    vtkMRMLProceduralColorNode,
    vtkMRMLScalarVolumeDisplayNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLScene,
    vtkMRMLScriptedModuleNode,
    vtkMRMLSliceCompositeNode,
    vtkMRMLSliceNode,
    vtkMRMLStorableNode,
    vtkMRMLStorageNode,
    vtkMRMLSubjectHierarchyNode,
    vtkMRMLTableNode,
    vtkMRMLVolumeArchetypeStorageNode,
    vtkMRMLVolumeDisplayNode,
    vtkMRMLVolumeNode,
)

app = None
mrmlScene = None
selfTests: Dict[str, object] = {}


class _Modules:
    """``slicer.modules``: one attribute per loaded module (lower-case name) and ``<Name>Widget``."""


modules = _Modules()


def _node_classes() -> Dict[str, type]:
    return {name: cls for name, cls in globals().items() if isinstance(cls, type) and issubclass(cls, vtkMRMLNode)}


from . import i18n, parameterNodeWrapper, ScriptedLoadableModule, util  # noqa: E402  (Slicer preloads these)
