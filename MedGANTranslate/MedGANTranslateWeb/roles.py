"""What a scan opened in a session is for: a model's inputs in the card's order ('input', 'input2', ... as many
as a model may take), then the reference. Shared by the server (which checks requests) and the session."""
from MedGANTranslateSlicer.models import MAX_INPUTS

INPUT_ROLES = ("input",) + tuple(f"input{n}" for n in range(2, MAX_INPUTS + 1))
ROLES = INPUT_ROLES + ("reference",)
