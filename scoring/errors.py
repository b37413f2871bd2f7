"""User-facing input errors: the CLI prints them on one line and exits 2."""


class InputError(ValueError):
    """Bad input from the user (file, column, target, artifact): never a traceback."""
