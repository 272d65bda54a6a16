"""How many examples a property test draws: all of them in `make test`, a tenth in `make check`.

`make check` is the fast loop (under three minutes); it sets DOLPHIN_EXAMPLES_FRACTION so that every
property still runs, on fewer draws. The full suite keeps the numbers written at each test.
"""

import os

FRACTION = float(os.environ.get("DOLPHIN_EXAMPLES_FRACTION", "1"))


def examples(full: int) -> int:
    """`full` examples scaled by the run's fraction, never fewer than three."""
    return max(3, round(full * FRACTION))
