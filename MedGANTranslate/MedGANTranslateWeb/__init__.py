"""The web face: ``medgan-translate serve``.

Each browser session gets its own process (:mod:`.session_process`) holding a real Slicer MRML scene and real
Slicer slice views (slicer-core through trame-slicer, rendered offscreen through EGL), where the Slicer
module's scene and job logic (``MedGANTranslateSlicer.scene``, ``.job``) run unchanged: the same node names,
provenance attributes, display presets and review panes. The engine runs in a further process per translation,
as in Slicer. :mod:`.server` is the HTTP side (aiohttp): sessions, the token, uploads, the data root.
"""
