"""Pure-torch references: the test oracle and the last-resort backend of every op. Written for
clarity, not speed."""
from . import blend, blur  # noqa: F401
