"""`dolphin`'s log lines (cli/logs.py): one line per event, py-libp2p at -vv only, repeats held back."""

import io
import logging

import pytest

from cli.logs import OneLineFormatter, RepeatLimiter, ThirdPartyAtDebug

pytestmark = pytest.mark.unit


def _logger(verbose: int, clock) -> tuple[logging.Logger, io.StringIO]:
    """A private logger tree with the handler `setup_logging` builds, writing to a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(OneLineFormatter(detailed=verbose >= 2))
    handler.addFilter(ThirdPartyAtDebug(show=verbose >= 2))
    handler.addFilter(RepeatLimiter(window=60, clock=clock))
    root = logging.getLogger(f"test-logs-{verbose}")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    return root, out


def test_py_libp2p_speaks_only_at_debug_and_every_event_is_one_line():
    now = [0.0]
    for verbose, shown in ((0, False), (2, True)):
        root, out = _logger(verbose, lambda: now[0])
        noise = logging.LogRecord(
            "libp2p.host.basic_host", logging.ERROR, __file__, 1,
            "Failed to open stream to peer %s:\nProtocols: %s\nRegistry Stats: None", ("Qm", "x"), None,
        )  # fmt: skip
        root.handle(noise)
        try:
            raise ValueError("bad frame\nsecond line")
        except ValueError:
            root.warning("a peer sent %s", "junk", exc_info=True)
        lines = out.getvalue().splitlines()
        assert ("DEBUG   libp2p.host.basic_host: Failed to open stream" in out.getvalue()) is shown
        assert len(lines) == (2 if shown else 1), lines
        assert all(line[:4].isdigit() for line in lines)  # each line starts with its timestamp
        warning = lines[-1]
        assert "a peer sent junk" in warning and "bad frame | second line" in warning
        assert ("Traceback" in warning) is shown


def test_a_repeated_warning_shows_once_a_minute_with_a_count():
    now = [0.0]
    root, out = _logger(1, lambda: now[0])
    for second in range(0, 125, 5):  # a retry every 5 s for two minutes
        now[0] = float(second)
        root.warning("pool record of %s failed validation", f"peer-{second}")
        root.info("heartbeat %d", second)  # information is never held back
    warnings = [line for line in out.getvalue().splitlines() if "WARNING" in line]
    assert len(warnings) == 3
    assert "peer-0" in warnings[0] and "more like it" not in warnings[0]
    assert "peer-60 failed validation (and 11 more like it in the last 60 s)" in warnings[1]
    assert out.getvalue().count("INFO") == 25
    root.error("another message")  # another template is its own
    assert "another message" in out.getvalue().splitlines()[-1]


def test_py_libp2p_records_reach_the_dolphin_handler_and_stop_there(capfd):
    """py-libp2p's import detaches its loggers, so its errors went to stderr unformatted at any -v."""
    from cli.logs import setup_logging

    setup_logging(0)
    try:
        logging.getLogger("libp2p.host.basic_host").error(
            "Failed to open stream to peer X:\n  Registry Stats: None"
        )
        logging.getLogger("tests.cli").warning("a warning of our own")
        err = capfd.readouterr().err
        assert "Failed to open stream" not in err and "Registry Stats" not in err
        assert "WARNING tests.cli: a warning of our own" in err
        setup_logging(2)
        logging.getLogger("libp2p.host.basic_host").error(
            "Failed to open stream to peer Y:\n  Registry Stats: None"
        )
        err = capfd.readouterr().err
        assert (
            "DEBUG   libp2p.host.basic_host: Failed to open stream to peer Y: |   Registry Stats: None" in err
        )
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == "dolphin"]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
