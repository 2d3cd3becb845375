"""The one exception type for mistakes a user can make (bad paths, files, config keys, URIs).

The CLI catches `UserError` and prints its message as one line on stderr with a non-zero exit; so it does for a
full disk (`storage_full`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys


class UserError(Exception):
    """A problem with the user's input, reported as one clear line: what went wrong and where."""


def one_line(error: BaseException) -> str:
    """A library's (often multi-line) error message as one line: its first non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# the errors of a full or read-only disk (or a file-size quota): no bug, nothing a traceback would explain
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}
_TENSORSTORE_OS_ERROR = re.compile(r"os_error_code='(\d+)'")  # tensorstore (orbax's writer) reports errno so


def storage_full(error: BaseException | None) -> str | None:
    """What a full disk made fail behind `error` (an OSError, or a library's error wrapping one, as orbax's
    tensorstore writes raise ValueError("... [os_error_code='28']")), as one line; None for any other error."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _NO_ROOM:
            return f"could not write {error.filename or 'a file'}: {error.strerror}"
        code = _TENSORSTORE_OS_ERROR.search(str(error))
        if code and int(code.group(1)) in _NO_ROOM:
            return f"could not write a checkpoint: {os.strerror(int(code.group(1)))}"
        error = error.__cause__ or error.__context__
    return None


class HideFullDiskTracebacks(logging.Filter):
    """Drops a library's log record of a full disk (orbax logs its writer threads' failures with their
    tracebacks): the CLI reports that failure once, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and storage_full(record.exc_info[1]))


def drop_late_callbacks(unraisable: sys.UnraisableHookArgs) -> None:
    """sys.unraisablehook that drops one harmless library race: when a checkpoint write fails, orbax's event loop
    closes while tensorstore's other writes are still finishing, and each of their completion callbacks raises
    RuntimeError('Event loop is closed') into tensorstore's threads (a traceback per write, after the real error).
    Anything else goes to Python's default hook."""
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return
    sys.__unraisablehook__(unraisable)
