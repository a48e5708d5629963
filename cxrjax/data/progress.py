"""Progress of a long step: a tqdm bar on a terminal, a plain line every `LOG_INTERVAL_S` seconds in a log.

Why one helper: training, validation, evaluation, the bootstrap, prediction, localisation, weight import, prepare and
the benchmarks all report the same way, so a log reads the same whatever wrote it. A tqdm bar redraws one line with
carriage returns and moves the cursor up and down for nested bars; written to a file that becomes one endless line
with `[A` debris. So when stderr is not a terminal the same tqdm (its counts, rate, ETA and rate limiting) writes
through `_Lines`, which keeps each redraw as a line of its own and drops the cursor control.

It sits in `cxrjax.data`, the lowest layer that needs it, because `data_pipelines` (prepare) may import nothing else.
"""

from __future__ import annotations

import re
import sys
from typing import Iterable

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # seconds between two lines of the same step in a log
# A log line: no bar (its width is unknown in a file), the counts, the time taken and left, the rate.
_LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class _Lines:
    """A file for tqdm that turns each redraw into one line: the carriage returns, the cursor moves between nested
    bars and the blanks that erase a closed bar are dropped."""

    _CONTROL = re.compile(r"\r|\n|\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = self._CONTROL.sub("", text).strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable | None = None, *, desc: str, unit: str = "it", total: int | None = None,
             disable: bool = False, **kwargs) -> tqdm:
    """A tqdm on stderr: a bar on a terminal; else a line when it starts, every `LOG_INTERVAL_S` seconds and when it
    closes (closed bars are kept, so a log shows where every step ended). On a terminal a bar nested under another
    (validation under training) disappears when it closes. `kwargs` go to tqdm (`initial`, `postfix`, ...)."""
    stream = sys.stderr
    if stream.isatty():
        kwargs.setdefault("leave", None)  # tqdm's None: keep the bar only when it is the outermost
        return tqdm(iterable, desc=desc, unit=unit, total=total, disable=disable, file=stream, dynamic_ncols=True,
                    **kwargs)
    kwargs.pop("leave", None)
    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=disable, file=_Lines(stream),
                mininterval=LOG_INTERVAL_S, bar_format=_LOG_FORMAT, leave=True, **kwargs)


def note(message: str) -> None:
    """A line on stderr that does not break the bars (on a terminal it is printed above them): what a long step
    has just done, e.g. saved a checkpoint."""
    tqdm.write(message, file=sys.stderr)
