"""The one exception type a user sees: its message names the input and what was expected."""


class DigitrecError(Exception):
    """An error the user can act on; the CLI prints its message alone, without a traceback."""
