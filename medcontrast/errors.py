"""The one exception type users see: a message in words, no traceback needed."""


class MedContrastError(Exception):
    """A problem with the user's input or settings, explained in the message.

    The command line prints the message and exits with ``exit_code`` instead of a traceback.
    """

    exit_code = 2  # a user error; subclasses that are not one say so


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most ``limit`` characters; the exception's
    type where it has no message), for one-line reports."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__
