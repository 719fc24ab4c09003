"""The one exception type a user can cause.

Anything raised as `FacegenError` is the user's to fix (a missing file, an
unknown attribute, a value out of range): the CLI prints its message on one
line and exits with code 2. Every other exception is a bug and keeps its
traceback.
"""


class FacegenError(Exception):
    """An error the user can fix; its message says what was wrong and what to do."""
