"""What `dolphin` writes to its log (stderr): one timestamped line per event, py-libp2p's own messages
only at -vv, and a warning that repeats shown once per minute with a count of what it held back.

Why: an idle gateway logged 18,837 lines in 27 minutes, 57 of them its own. py-libp2p logs every failed
stream open to a peer as a multi-line warning or error (protocols, registry statistics), and a daemon
retrying something every few seconds repeated the same warning all day. Operators read these logs with
grep and journalctl, where a message split over lines loses its timestamp.
"""

from __future__ import annotations

import logging
import sys
import time

from p2p.host import attach_libp2p_logging

__all__ = ["REPEAT_WINDOW_S", "OneLineFormatter", "RepeatLimiter", "ThirdPartyAtDebug", "setup_logging"]

REPEAT_WINDOW_S = 60.0
"""A warning with the same text template from the same logger shows at most once per this many seconds."""

_HANDLER_NAME = "dolphin"
_THIRD_PARTY_NOISE = ("libp2p", "multiaddr", "async_service")
"""Loggers of libraries that describe every remote peer's misbehaviour: debugging detail, not events."""


class OneLineFormatter(logging.Formatter):
    """Every record on one line: line breaks in the message (and a traceback, shown only at `detailed`)
    become ` | `; without `detailed` an exception is named by its type and message."""

    def __init__(self, *, detailed: bool) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.detailed = detailed

    def formatException(self, exc_info) -> str:
        if self.detailed:
            return super().formatException(exc_info)
        _kind, error, _traceback = exc_info
        return f"({type(error).__name__}: {error})"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        record.exc_text = None  # the next handler's formatter decides for itself
        return " | ".join(line.rstrip() for line in text.splitlines() if line.strip())


class ThirdPartyAtDebug(logging.Filter):
    """Drops the records of `_THIRD_PARTY_NOISE` loggers unless `show` (-vv), and labels them DEBUG then."""

    def __init__(self, *, show: bool) -> None:
        super().__init__()
        self.show = show

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] not in _THIRD_PARTY_NOISE:
            return True
        if self.show:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.show


class RepeatLimiter(logging.Filter):
    """Passes the first WARNING-or-above record of each (logger, level, text template) and then holds the
    same one back for `window` seconds; the next one shown after that says how many were held back."""

    def __init__(self, window: float = REPEAT_WINDOW_S, clock=time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (shown at, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        shown_at, held = self._seen.get(key, (None, 0))
        if shown_at is not None and now - shown_at < self.window:
            self._seen[key] = (shown_at, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - shown_at:.0f} s)"
        if len(self._seen) > 4096:  # bounded: forget templates not seen for a window
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        return True


def setup_logging(verbose: int) -> None:
    """The root logger for a `dolphin` command run with `verbose` -v flags (0: warnings, 1: info,
    2: debug, py-libp2p and full tracebacks included)."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(detailed=verbose >= 2))
    handler.addFilter(ThirdPartyAtDebug(show=verbose >= 2))
    handler.addFilter(RepeatLimiter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:  # a second run in-process
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
    attach_libp2p_logging()  # so py-libp2p's records meet the filters above (see there)
    if verbose < 2:
        # httpx logs every request at INFO, the vLLM engine's once-a-second /metrics poll included.
        logging.getLogger("httpx").setLevel(logging.WARNING)
