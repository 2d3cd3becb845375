"""The one exception type for mistakes a user can make (bad paths, files, config keys, URIs).

The CLI catches `UserError` and prints its message as one line on stderr with a non-zero exit; anything else
is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one clear line: what went wrong and where."""


def one_line(error: BaseException) -> str:
    """A library's (often multi-line) error message as one line: its first non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
