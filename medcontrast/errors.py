"""The one exception type users see: a message in words, no traceback needed."""


class MedContrastError(Exception):
    """A problem with the user's input or settings, explained in the message.

    The command line prints the message and exits with status 2 instead of a traceback.
    """
