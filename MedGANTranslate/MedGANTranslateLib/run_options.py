"""How a model is run, one object for every face: a :class:`~.pipeline.Translator` is built from it, and
:func:`~.file_translation.translate_files`, a batch and the command line pass it along whole, so an option added
here reaches each of them without being threaded through their signatures one keyword at a time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence


@dataclass(frozen=True)
class RunOptions:
    """``device``: auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps. ``roi`` and ``overlap``
    replace the card's sliding-window size and overlap. ``threads``: CPU threads (None: the engine's default).
    ``tta``: average with the mirror images the card declares. ``n4``: N4 bias-field correction of the MR inputs
    even where the card does not ask for it. ``strict``: refuse a scan the checks warn about. ``uncertainty``:
    run the test-time variants and give their spread (``uncertainty_variants`` per ensemble member, None: the
    default). ``models_dirs``: where an ensemble member given by model id is looked up, besides the registry."""

    device: str = "auto"
    roi: Optional[Sequence[int]] = None
    overlap: Optional[float] = None
    threads: Optional[int] = None
    tta: bool = False
    n4: bool = False
    strict: bool = False
    uncertainty: bool = False
    uncertainty_variants: Optional[int] = None
    models_dirs: Sequence[str] = ()

    def changing_results(self) -> List[str]:
        """The options set that change what a translation gives (not how fast), as a batch case's status
        records them: a rerun with other ones translates the case again."""
        return [name for name in ("n4", "tta") if getattr(self, name)]
