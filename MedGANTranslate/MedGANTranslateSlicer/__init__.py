"""Slicer-side glue of the MedGANTranslate module.

``engine_messages``, ``engine_process``, ``dependencies`` and ``models`` import neither ``slicer`` nor ``qt`` at
import time, so they are tested with plain pytest; ``scene`` and ``job`` talk to the MRML scene.
The engine itself (``MedGANTranslateLib``) never imports anything from here.
"""
