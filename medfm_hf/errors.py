"""One-line error reporting shared by ``medfm-robust`` and ``evaluate.py``.

Bad input and environment failures (``ValueError`` and its subclasses, ``OSError`` such as a full disk or a
missing permission, ``KeyError`` from a registry lookup) are printed as one line, without a traceback, and
only by rank 0 when several processes run under ``accelerate launch``.
"""

from __future__ import annotations

import sys
import time

#: Seconds a failing rank other than 0 waits before exiting, so that the launcher does not stop rank 0
#: (which prints the message) before it could print.
GRACE_SECONDS = 3.0
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError)


def error_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line (an ``OSError`` keeps its file name and reason)."""
    if isinstance(exc, KeyError) and exc.args:
        msg = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.strerror:
        msg = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
        if getattr(exc, "filename2", None):
            msg += f" -> {exc.filename2}"
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


def report_error(prog: str, exc: BaseException) -> int:
    """Print ``prog: error: <one line>`` to stderr on rank 0; returns the exit status 2."""
    from medfm_hf.env import is_main_rank

    if is_main_rank():
        print(f"{prog}: error: {error_line(exc)}", file=sys.stderr, flush=True)
    else:
        time.sleep(GRACE_SECONDS)
    return 2
