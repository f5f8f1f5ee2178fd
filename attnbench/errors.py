"""User-facing errors: one line naming the problem and the fix, never a traceback."""


class UserError(Exception):
    """Bad input or an unusable environment; the CLI prints it as one line and exits 2."""
