"""The one exception type for bad user input: the CLI turns it into a clean message and a non-zero exit."""


class InputError(ValueError):
    """Bad input from the user: the message names the file, the line or record, and what is wrong."""
