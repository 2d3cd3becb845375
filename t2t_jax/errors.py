"""The one exception type for mistakes a user can make (bad paths, files, config keys, URIs).

The CLI catches `UserError` and prints its message as one line on stderr with a non-zero exit; anything else
is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one clear line: what went wrong and where."""
