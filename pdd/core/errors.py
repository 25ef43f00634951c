"""The one error type users see: a one-line message naming the thing and what to do."""


class PddError(Exception):
    """A user-facing failure. ``str(err)`` is a single line; the CLI prints it and exits 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
