"""Scene and job logic of the MedGANTranslate module, shared by every face (the Slicer module and the web face).

``engine_messages``, ``engine_process``, ``dependencies`` and ``models`` import neither ``slicer`` nor ``qt`` at
import time, so they are tested with plain pytest; ``scene`` and ``job`` (with ``engine_job``) talk to the MRML
scene and run without Qt too (the web face's session process); ``panel``, ``panel_view``, ``run_view``,
``results_view``, ``parameters``, ``self_test``, ``install`` and ``importing`` are the Slicer panel's.
The engine itself (``MedGANTranslateLib``) never imports anything from here.
"""
