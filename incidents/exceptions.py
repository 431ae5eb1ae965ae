"""Errors the core and the apps above it share, so that a view or the API answers them alike."""

from django.core.exceptions import PermissionDenied


class ChangedError(Exception):
    """Someone else changed the record since the user loaded it (an HTTP 409)."""

    message = "This was changed by someone else. Reload the page to see its current state."


class CommanderRefused(PermissionDenied):
    """Not a missing right but a missing qualification (a certification, mentoring): `problems`
    say which, and the page shows them."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems
