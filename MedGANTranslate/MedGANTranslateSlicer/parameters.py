"""The panel's settings as a parameter node, and what a translation request and its result mean in them.

Slicer saves a parameter node with the scene, so the model, inputs, options and the last result's nodes come back
when a scene is loaded. This module keeps the one place that says how those settings become a
``TranslationRequest`` (the model's own ROI and overlap when the fields are 0, mirror averaging only where the
model was trained with mirrored scans and no uncertainty map is made) and where a result's nodes are kept.
"""
from __future__ import annotations

from typing import Annotated, List

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper

from MedGANTranslateLib.card import CardSummary

from . import models
from .job import TranslationRequest, TranslationResult

INPUT_VOLUMES = ("inputVolume", "input2Volume", "input3Volume", "input4Volume")


@parameterNodeWrapper
class MedGANTranslateParameterNode:
    """Panel settings; saved with the scene. ``modelKey`` is 'id@version'; ROI 0 and overlap 0 mean the
    model's own values."""

    inputVolume: vtkMRMLScalarVolumeNode
    input2Volume: vtkMRMLScalarVolumeNode
    input3Volume: vtkMRMLScalarVolumeNode
    input4Volume: vtkMRMLScalarVolumeNode
    referenceVolume: vtkMRMLScalarVolumeNode
    modelKey: str = ""
    device: str = "auto"
    modelsFolder: str = ""
    roiX: Annotated[int, WithinRange(0, 1024)] = 0
    roiY: Annotated[int, WithinRange(0, 1024)] = 0
    roiZ: Annotated[int, WithinRange(0, 1024)] = 0
    overlap: Annotated[float, WithinRange(0.0, 0.95)] = 0.0
    testTimeMirror: bool = False
    biasCorrection: bool = False
    estimateUncertainty: bool = False
    strictChecks: bool = False
    createDifference: bool = True
    showSideBySide: bool = True
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    syntheticVolume: vtkMRMLScalarVolumeNode
    differenceVolume: vtkMRMLScalarVolumeNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    metricsTable: vtkMRMLTableNode


def input_volumes(p: MedGANTranslateParameterNode, summary: CardSummary) -> List:
    """The input nodes the model takes, in the card's order (None where none is selected)."""
    return [getattr(p, name) for name in INPUT_VOLUMES][:len(summary.inputs)]


def request_from_parameters(p: MedGANTranslateParameterNode, summary: CardSummary) -> TranslationRequest:
    roi = (p.roiX, p.roiY, p.roiZ)
    uncertainty = p.estimateUncertainty and summary.uncertainty_passes > 0
    return TranslationRequest(
        model=summary,
        inputs=input_volumes(p, summary),
        reference=p.referenceVolume,
        difference=p.createDifference,
        device=p.device or "auto",
        roi=roi if all(roi) else None,
        overlap=p.overlap if p.overlap > 0 else None,
        models_dir=p.modelsFolder,
        tta=p.testTimeMirror and bool(summary.test_time_mirror) and not uncertainty,
        n4=p.biasCorrection and models.takes_mr(summary),
        uncertainty=uncertainty,
        strict=p.strictChecks,
    )


def keep_result(p: MedGANTranslateParameterNode, result: TranslationResult) -> None:
    """The result's nodes, saved with the scene; one modified event for all four."""
    with slicer.util.NodeModify(p):
        p.syntheticVolume = result.synthetic
        p.differenceVolume = result.difference
        p.uncertaintyVolume = result.uncertainty
        p.metricsTable = result.metrics_table
