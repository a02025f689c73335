"""One browser session's Slicer: a real MRML scene (trame-slicer's ``SlicerApp`` on slicer-core), three real
axial slice views rendered offscreen, and the Slicer module's own scene and job logic for loading, translating
and reviewing. It runs in the session's own process (:mod:`.session_process`); every public method answers
one request of the browser with plain data (or PNG bytes), and raises :class:`~.confinement.RequestError`
for what the user must change."""
from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from MedGANTranslateLib import dicom_reading, image_writing, imageio
from MedGANTranslateLib.card import output_display
from MedGANTranslateLib.errors import MedGANError
from MedGANTranslateSlicer import models as model_list
from MedGANTranslateSlicer import scene
from MedGANTranslateSlicer.engine_messages import format_duration, warning_text
from MedGANTranslateSlicer.job import TranslationJob, TranslationRequest

from .confinement import RequestError, extract_dicom_zip, remove_quietly
from .roles import INPUT_ROLES, ROLES

#: What the third pane may show beside input and synthetic image.
THIRD_PANE = ("difference", "reference", "uncertainty")
MODES = ("side", "overlay")
MAX_VIEW_PIXELS = 1600
#: What Slicer's application logic calls home: its share/ColorFiles holds the colour tables the module's display
#: presets name (the diverging difference map), which Slicer has and slicer-core does not.
SLICER_HOME = Path(__file__).resolve().parent / "slicer_home"
COLOR_BAR_STEPS = 32
#: Downloads: name in the URL -> (result file kind, what the browser gets).
DOWNLOADS = {
    "synthetic.nii.gz": "synthetic", "difference.nii.gz": "difference", "uncertainty.nii.gz": "uncertainty",
    "synthetic-dicom.zip": "synthetic", "report.html": "report", "metrics.json": "metrics",
}


def _rgb_hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{int(round(255 * max(0.0, min(1.0, c)))):02x}" for c in rgb[:3])


class ReviewSession:
    """The scene, views and translation job of one browser session; ``folder`` is the session's own folder
    (uploads, job files, downloads), removed with the session."""

    def __init__(self, folder: Path, models_dirs: Sequence[str] = ()) -> None:
        from trame_slicer.core import SlicerApp
        from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

        self.folder = folder
        self.models_dirs = [str(d) for d in models_dirs]
        self.app = SlicerApp()
        slicer.mrmlScene = self.app.scene  # what slicer.util and the shared scene logic work on
        self.app.app_logic.SetHomeDirectory(str(SLICER_HOME))
        self.app.app_logic.SetShareDirectory("share")
        # Slicer's colour logic (it reads share/ColorFiles when it gets the scene); kept, since it removes its
        # colour nodes when it goes and the application logic does not hold it
        self.color_logic = slicer.vtkSlicerColorLogic()
        self.color_logic.SetMRMLApplicationLogic(self.app.app_logic)
        self.color_logic.SetMRMLScene(self.app.scene)
        self.app.app_logic.SetModuleLogic("Colors", self.color_logic)
        self.app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
        self.views = {pane: self.app.view_manager.create_view(ViewLayoutDefinition.from_xml(scene.pane_view(pane)))
                      for pane in scene.PANES}
        self.nodes: Dict[str, Any] = {}
        self.sources: Dict[str, Path] = {}  # what each role was read from (a DICOM input's tags go into DICOM output)
        self.job: Optional[TranslationJob] = None
        self.synthetic = None
        self.files: Dict[str, str] = {}
        self.metrics: Optional[Dict[str, Any]] = None
        self.error: Optional[Dict[str, str]] = None
        self.message = ""
        self.warnings: List[str] = []
        self.mode, self.third, self.opacity = "side", "difference", 0.5

    # --- models ------------------------------------------------------------------------------------------

    def models(self) -> List[Dict[str, Any]]:
        found = model_list.available_models(self.models_dirs)
        default = model_list.model_key(model_list.default_model(found)) if found else ""
        return [{"key": model_list.model_key(m), "label": model_list.model_label(m), "inputs": model_list.input_labels(m),
                 "output": f"{m.output_modality} ({m.output_unit})", "site": m.site, "intended_use": m.intended_use,
                 "expected_time": model_list.expected_time(m), "uncertainty": m.uncertainty_passes > 0,
                 "uncertainty_text": model_list.uncertainty_tooltip(m), "n4": model_list.takes_mr(m), "default": model_list.model_key(m) == default}
                for m in found]

    # --- loading -----------------------------------------------------------------------------------------

    def load(self, role: str, path: str, name: str) -> Dict[str, Any]:
        """Reads ``path`` (an image file, a DICOM folder, or an uploaded zip of one series) with the engine's
        reader and its checks, and makes it the session's ``role`` volume. The file is never changed."""
        if role not in ROLES:
            raise RequestError(400, f"Unknown role '{role}'; load a scan as one of {', '.join(ROLES)}.")
        self._refuse_while_running("load another scan")
        source = Path(path)
        if source.suffix.lower() == ".zip":
            unpacked = Path(tempfile.mkdtemp(prefix=f"{role}-dicom-", dir=self.folder))
            source = extract_dicom_zip(source, unpacked, 4 * source.stat().st_size + (64 << 20))
        try:
            image = imageio.read_image(source, role)
            imageio.check_volume(image, role)
        except MedGANError as exc:
            raise RequestError(400, str(exc)) from exc
        node = slicer.util.addVolumeFromArray(np.ascontiguousarray(sitk.GetArrayFromImage(image)),
                                              ijkToRAS=slicer.util.vtkMatrixFromArray(scene.image_ijk_to_ras(image)),
                                              name=name)
        self._forget_results()
        scene.remove_nodes([self.nodes.get(role)])
        self.nodes[role], self.sources[role] = node, source
        self.mode = "side"
        return self.state()

    def _forget_results(self) -> None:
        """A new scan makes the last result stale: its nodes and files go."""
        if self.synthetic is not None:
            linked = [self.synthetic.GetNodeReference(role) for role in
                      (scene.DIFFERENCE_ROLE, scene.UNCERTAINTY_ROLE, scene.METRICS_ROLE)]
            scene.remove_nodes([self.synthetic] + linked)
        self.synthetic, self.metrics, self.error, self.warnings, self.message = None, None, None, [], ""
        for stale in ("results", "downloads"):  # the engine's kept outputs (with sidecars) and what was made of them
            remove_quietly(self.folder / stale)
        self.files = {}

    # --- translating -------------------------------------------------------------------------------------

    def translate(self, key: str, uncertainty: bool = False, device: str = "auto", n4: bool = False) -> Dict[str, Any]:
        """Starts the engine on the input with the model ``key`` ('id@version' from :meth:`models`; nothing else
        is accepted: the browser never names a path or a URL); ``n4``: N4 bias-field correction of the MR inputs."""
        self._refuse_while_running("start another translation")
        model = model_list.find_model(model_list.available_models(self.models_dirs), str(key))
        if model is None:
            raise RequestError(400, f"'{key}' is not a registered model; choose one from the list.")
        missing = [f"{spec.label} (input {number})" for number, (role, spec) in
                   enumerate(zip(INPUT_ROLES, model.inputs), start=1) if role not in self.nodes]
        if missing:
            raise RequestError(400, f"{model.title} takes {len(model.inputs)} input(s); open "
                                    f"{' and '.join(missing)} first.")
        if uncertainty and model.uncertainty_passes <= 0:
            raise RequestError(400, model_list.uncertainty_tooltip(model))
        if n4 and not model_list.takes_mr(model):
            raise RequestError(400, f"{model.title} takes no MR input, and N4 corrects the bias field of MR scans.")
        self._forget_results()
        inputs = [self.nodes[role] for role in INPUT_ROLES[:len(model.inputs)]]
        request = TranslationRequest(model=model, inputs=inputs, reference=self.nodes.get("reference"),
                                     device=device, uncertainty=bool(uncertainty), n4=bool(n4),
                                     models_dir=self.models_dirs[0] if self.models_dirs else "")
        self.job = TranslationJob(request, on_finished=self._finished, temporary_root=str(self.folder),
                                  keep_outputs=self.folder / "results")
        self.message = "Starting the engine..."
        try:
            self.job.start()
        except Exception as exc:
            self.job, self.message = None, ""
            raise RequestError(500, f"The translation could not start: {exc}") from exc
        return self.state()

    def _finished(self, job: TranslationJob) -> None:
        if job.cancelled:
            self.message = job.wording.cancelled
        elif job.error is not None:
            self.error = {"title": job.error.title, "message": str(job.error), "log": job.error.log[-4000:]}
            self.message = job.error.title
        else:
            result = job.result
            self.synthetic, self.files, self.metrics = result.synthetic, result.files, result.metrics
            if "reference" in self.nodes:  # the same window on both, so the panes compare
                scene.apply_synthetic_display(self.nodes["reference"], output_display(job.request.model.display,
                                                                                      result.provenance))
            self.warnings = list(result.warnings) + [warning_text(w) for w in result.scan_warnings]
            self.message = "Done: " + self.synthetic.GetName()

    def cancel(self) -> Dict[str, Any]:
        """Stops the run without waiting; the engine removes its partial outputs and the job its folder."""
        if self.job is not None and self.job.running:
            self.job.cancel()
        return self.state()

    def _refuse_while_running(self, what: str) -> None:
        if self.job is not None and self.job.running:
            raise RequestError(409, f"A translation is running; wait for it or cancel it to {what}.")

    # --- what the page shows -----------------------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        running = self.job is not None and self.job.running
        tracker = self.job.tracker if self.job is not None else None
        synthetic = self.synthetic
        return {
            "running": running,
            "percent": tracker.percent if tracker is not None else 0,
            "status": (tracker.message or self.message) if running and tracker is not None else self.message,
            "eta": format_duration(tracker.eta_s) if running and tracker is not None and tracker.eta_s else "",
            "volumes": {role: node.GetName() for role, node in self.nodes.items()},
            "result": None if synthetic is None else {
                "name": synthetic.GetName(),
                "provenance": {k: synthetic.GetAttribute(k) for k in synthetic.GetAttributeNames() or ()
                               if k.startswith("MedGANTranslate.")},
                "downloads": [name for name, kind in DOWNLOADS.items() if kind in self.files
                              and (name != "synthetic-dicom.zip" or self._dicom_window() is not None)],
                "third": [t for t in THIRD_PANE if self._third_volume(t) is not None],
            },
            "metrics": self._metric_rows(),
            "warnings": self.warnings,
            "error": self.error,
            "view": {"mode": self.mode, "third": self.third, "opacity": self.opacity, "range": self._slice_range(),
                     "panes": [self._pane_state(pane, layers) for pane, layers in self._panes().items()],
                     "uncertainty": self._uncertainty_slider()},
        }

    def _metric_rows(self) -> List[List[str]]:
        table = None if self.synthetic is None else self.synthetic.GetNodeReference(scene.METRICS_ROLE)
        return scene.table_rows(table) if table is not None else []

    def _third_volume(self, kind: str):
        if self.synthetic is None:
            return None
        if kind == "difference":
            return self.synthetic.GetNodeReference(scene.DIFFERENCE_ROLE)
        if kind == "uncertainty":
            return scene.uncertainty_of(self.synthetic)
        return self.synthetic.GetNodeReference(scene.REFERENCE_ROLE)

    def set_view(self, mode: str, third: str, opacity: float, threshold: Optional[float] = None) -> Dict[str, Any]:
        """Layout, third pane, overlay opacity and, with an uncertainty map, the value above which it shows."""
        if mode not in MODES or third not in THIRD_PANE:
            raise RequestError(400, f"View mode must be one of {MODES} and the third pane one of {THIRD_PANE}.")
        self.mode, self.third, self.opacity = mode, third, min(1.0, max(0.0, float(opacity)))
        uncertainty = scene.uncertainty_of(self.synthetic)
        if uncertainty is not None and threshold is not None:
            scene.set_uncertainty_threshold(uncertainty, max(0.0, float(threshold)))
        return self.state()

    def _uncertainty_slider(self) -> Optional[Dict[str, float]]:
        uncertainty = scene.uncertainty_of(self.synthetic)
        if uncertainty is None:
            return None
        top, value = scene.uncertainty_slider(uncertainty)
        return {"max": top, "value": value, "unit": uncertainty.GetAttribute("MedGANTranslate.Unit") or ""}

    def _panes(self) -> Dict[str, tuple]:
        """Pane -> (background, foreground, foreground opacity) for the current view mode."""
        source = self.nodes.get("input")
        if self.synthetic is None:
            volumes = [source, self.nodes.get("reference")]
            return {pane: (volume, None, 0.0) for pane, volume in scene.review_panes(volumes)}
        if self.mode == "overlay":
            return {scene.PANES[0]: (source, self.synthetic, self.opacity)}
        volumes = [source, self.synthetic, self._third_volume(self.third)]
        panes = {pane: (volume, None, 0.0) for pane, volume in scene.review_panes(volumes)}
        uncertainty = scene.uncertainty_of(self.synthetic)
        if uncertainty is not None and self.third != "uncertainty":
            panes[scene.PANES[1]] = (self.synthetic, uncertainty, scene.UNCERTAINTY_OPACITY)
        return panes

    @staticmethod
    def _pane_state(pane: str, layers: tuple) -> Dict[str, Any]:
        background, foreground, _ = layers
        title = background.GetName() + (f" + {foreground.GetName()}" if foreground is not None else "")
        return {"pane": pane, "title": title, "color": scene.PANE_COLORS[pane],
                "color_bar": background.GetAttribute("MedGANTranslate.Synthetic") == "true"}

    def _slice_range(self) -> Optional[List[float]]:
        source = self.nodes.get("input")
        if source is None:
            return None
        bounds = [0.0] * 6
        source.GetRASBounds(bounds)
        return [bounds[4], bounds[5]]

    def render(self, pane: str, offset: Optional[float], width: int, height: int) -> bytes:
        """PNG of one pane: Slicer's slice view with its own displayable managers, at ``offset`` mm along its
        axis (the panes are linked: the page asks each for the same offset)."""
        if pane not in self.views:
            raise RequestError(404, f"No view '{pane}'.")
        layers = self._panes().get(pane)
        view = self.views[pane]
        background, foreground, opacity = layers if layers else (None, None, 0.0)
        view.set_background_volume_id(background.GetID() if background is not None else None)
        view.set_foreground_volume_id(foreground.GetID() if foreground is not None else None)
        view.set_foreground_opacity(opacity)
        window = view.render_window()
        window.SetSize(max(16, min(MAX_VIEW_PIXELS, int(width))), max(16, min(MAX_VIEW_PIXELS, int(height))))
        view.fit_view_to_content()
        if offset is not None:
            view.set_slice_value(float(offset))
        view.render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.ReadFrontBufferOff()
        grab.Update()
        writer = vtk.vtkPNGWriter()
        writer.WriteToMemoryOn()
        writer.SetInputConnection(grab.GetOutputPort())
        writer.Write()
        return bytes(memoryview(writer.GetResult()))

    def color_bar(self, pane: str) -> Optional[Dict[str, Any]]:
        """The colours and value range of the volume in ``pane`` (background; the page draws the bar)."""
        layers = self._panes().get(pane)
        node = layers[0] if layers else None
        display = None if node is None else node.GetScalarVolumeDisplayNode()
        if display is None:
            return None
        low, high = display.GetWindowLevelMin(), display.GetWindowLevelMax()
        table = display.GetColorNode().GetScalarsToColors() if display.GetColorNode() is not None else None
        if table is None:
            colors = [_rgb_hex((v, v, v)) for v in np.linspace(0, 1, COLOR_BAR_STEPS)]
        else:
            first, last = table.GetRange()
            colors = []
            for t in np.linspace(0, 1, COLOR_BAR_STEPS):
                rgb = [0.0, 0.0, 0.0]
                table.GetColor(first + (last - first) * t, rgb)
                colors.append(_rgb_hex(rgb))
        return {"min": low, "max": high, "colors": colors, "unit": node.GetAttribute("MedGANTranslate.Unit") or "",
                "name": node.GetName()}

    # --- downloads -----------------------------------------------------------------------------------------

    def _dicom_window(self):
        display = self.synthetic.GetScalarVolumeDisplayNode() if self.synthetic is not None else None
        if display is None or self.synthetic.GetAttribute("MedGANTranslate.Modality") not in ("CT", "CBCT"):
            return None
        return display.GetLevel(), display.GetWindow()

    def download(self, name: str) -> Dict[str, str]:
        """A file of the last result for the browser to download: {"path", "filename"}. NIfTI and DICOM are
        written from the engine's output by the engine's own writer (provenance kept, read back and checked)."""
        kind = DOWNLOADS.get(name)
        if kind is None or kind not in self.files:
            raise RequestError(404, f"There is no '{name}' for this session's result.")
        kept = Path(self.files[kind])
        stem = self.synthetic.GetName().split(scene.SEPARATOR)[0].strip() or "scan"
        if name in ("report.html", "metrics.json"):
            return {"path": str(kept), "filename": f"{stem} {name}"}
        out = self.folder / "downloads" / name
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            image = imageio.read_image(kept, "output")
            metadata = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys() if k.startswith("MedGANTranslate")}
            if name.endswith(".zip"):
                series = self.folder / "downloads" / "dicom"
                remove_quietly(series)
                source = dicom_reading.dicom_source(self.sources["input"]) if self.sources["input"].is_dir() else None
                image_writing.write_image(image, series, metadata, source=source, window=self._dicom_window())
                staged = out.with_name(out.name + ".partial")  # renamed once whole: never a half zip to serve
                with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as bundle:
                    for member in sorted(series.iterdir()):
                        bundle.write(member, f"synthetic-ct/{member.name}")
                staged.replace(out)
                shutil.rmtree(series)
            else:
                image_writing.write_image(image, out, metadata)
        return {"path": str(out), "filename": f"{stem} {name}"}

    def close(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
        logging.info("MedGANTranslate web: session closed")
