"""Progress of long work, one way everywhere: training, evaluations, measurements.

``Progress(total, desc=...)`` shows how far a job is:

- on a terminal (stderr is a TTY), a tqdm bar: ``lstm:  17%|###   | 300/1800 [00:45, loss 2.10, about 3 min left]``;
- otherwise (a log file, a pipe, a notebook's captured stream) plain lines, one every
  ``interval`` seconds (20 by default), one when a new stage starts and one at the end::

      lstm: step 300/1800 (17%), loss 2.10, 45 s elapsed, about 3 min left

  instead of the carriage-return frames of a bar, which fill a file with thousands of copies.

The time left is estimated from the steps: ``elapsed / done * (total - done)`` over the steps
of this invocation, and where the job has a wall-clock budget (``time_limit``, a training
run's ``max_seconds``) it is ``min(that estimate, time_limit - elapsed)``: a run capped at 3
minutes never announces 27.

``progress=False`` (the command line's ``--quiet``) turns everything off. Code that is several
calls away from the command line (a family's evaluation, through ``Family.evaluate``) takes
``progress=None``, which means what the innermost ``enabled(flag)`` block says: the command
line wraps its work in ``enabled(not quiet)``; outside any block (a library call) it is off.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Any, Callable, Iterator, TextIO

from seqlab.validation import fail

DEFAULT_INTERVAL = 20.0
_default_enabled = [False]  # off for library calls; the command line turns it on


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Within the block, ``Progress(..., enabled=None)`` is on or off as ``flag`` says."""
    if not isinstance(flag, bool):
        fail("progress", "True or False", repr(flag))
    _default_enabled.append(flag)
    try:
        yield
    finally:
        _default_enabled.pop()


def default_enabled() -> bool:
    """Whether progress is shown where the caller did not say (see ``enabled``)."""
    return _default_enabled[-1]


def resolve(flag: bool | None) -> bool:
    """``flag``, or the default of the innermost ``enabled`` block where it is ``None``."""
    if flag is None:
        return default_enabled()
    if not isinstance(flag, bool):
        fail("progress", "True, False or None", repr(flag))
    return flag


def format_duration(seconds: float) -> str:
    """A duration for people: ``45 s``, ``3 min``, ``1 h 05 min``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 99.5:
        return f"{seconds:.0f} s"
    if seconds < 59.5 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes:02d} min"


def estimate_remaining(done: int, total: int | None, elapsed: float, *, time_left: float | None = None
                       ) -> float | None:
    """Seconds left: from the pace so far (``elapsed`` seconds for ``done`` units, ``total`` in
    all), capped by ``time_left`` (what a wall-clock budget still allows) where given. ``None``
    when nothing can be said yet (no unit done and no budget, or no total and no budget)."""
    by_steps = None
    if total is not None and done > 0:
        by_steps = elapsed / done * max(total - done, 0)
    if time_left is None:
        return by_steps
    time_left = max(time_left, 0.0)
    return time_left if by_steps is None else min(by_steps, time_left)


class Progress:
    """How far a job is, shown on ``file`` (stderr by default): a bar on a terminal, plain
    lines elsewhere (see the module docstring).

    ``total``: units of the whole job (``None``: unknown); ``initial``: units done before (a
    resumed run), which count toward the fraction but not toward the pace; ``unit``: the word
    of the plain lines (``step 300/1800``); ``time_limit``: the wall-clock budget of this
    invocation in seconds (caps the time left); ``interval``: seconds between plain lines;
    ``enabled``: ``False`` shows nothing, ``None`` follows ``enabled(...)`` blocks; ``tty``:
    force one mode (default: ``file.isatty()``); ``estimate``: show the time left (not for
    stages of unequal length); ``clock``: a monotonic clock (for tests)."""

    def __init__(self, total: int | None = None, *, desc: str, unit: str = "step", initial: int = 0,
                 time_limit: float | None = None, interval: float = DEFAULT_INTERVAL,
                 enabled: bool | None = None, file: TextIO | None = None, tty: bool | None = None,
                 estimate: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
            fail("total", "an integer >= 0 or None", repr(total))
        if isinstance(initial, bool) or not isinstance(initial, int) or initial < 0:
            fail("initial", "an integer >= 0", repr(initial))
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            fail("interval", "a number > 0", repr(interval))
        self.total, self.desc, self.unit = total, desc, unit
        self.initial = self.n = initial
        self.time_limit = time_limit
        self.estimate = estimate
        self.interval = float(interval)
        self.enabled = resolve(enabled)
        self.file = sys.stderr if file is None else file
        self.clock = clock
        self.start = self.last_line = clock()
        self.fields: dict[str, str] = {}
        self.stage: str | None = None
        self.closed = False
        self._bar: Any = None
        if not self.enabled:
            return
        if tty is None:
            isatty = getattr(self.file, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        if tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.file,
                             dynamic_ncols=True, leave=True,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    # ---- what the job reports

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.n += n
        if not self.enabled or self.closed:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(n)
        elif self.clock() - self.last_line >= self.interval:
            self._line()

    def set(self, **fields: Any) -> None:
        """Figures shown beside the count (``loss="2.10"``); a value of ``None`` removes one."""
        for k, v in fields.items():
            if v is None:
                self.fields.pop(k, None)
            else:
                self.fields[k] = str(v)
        if self._bar is not None and not self.closed:
            self._bar.set_postfix_str(self._postfix(), refresh=False)

    def begin(self, stage: str) -> None:
        """A new stage of the job starts (``"logistic regression on the pixels"``): shown at once,
        as a plain line too."""
        self.stage = stage
        if not self.enabled or self.closed:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=True)
        else:
            self._line()

    def write(self, text: str) -> None:
        """A message line that does not disturb the bar."""
        if not self.enabled:
            return
        if self._bar is not None and not self.closed:
            self._bar.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)

    def close(self) -> None:
        """The end: the bar stays on screen; the plain lines end with a last one."""
        if self.closed:
            return
        self.closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(final=True), refresh=False)
            self._bar.close()
        else:
            self._line(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- what is shown

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float | None:
        """Seconds left (``estimate_remaining`` over this invocation's units and budget); ``None``
        where nothing can be said, or where ``estimate`` is off."""
        if not self.estimate:
            return None
        elapsed = self.elapsed()
        total = None if self.total is None else self.total - self.initial
        time_left = None if self.time_limit is None else self.time_limit - elapsed
        return estimate_remaining(self.n - self.initial, total, elapsed, time_left=time_left)

    def _postfix(self, final: bool = False) -> str:
        """What the bar shows after the count and the elapsed time (tqdm puts ", " before it)."""
        parts = ([self.stage] if self.stage and not final else []) + list(self.fields.values())
        left = None if final else self.remaining()
        if left is not None:
            parts.append(f"about {format_duration(left)} left")
        return ", ".join(parts)

    def refresh(self) -> None:
        """Redraw the bar now (it redraws by itself at most every 0.1 s)."""
        if self._bar is not None and not self.closed:
            self._bar.set_postfix_str(self._postfix(), refresh=True)

    def status(self, final: bool = False) -> str:
        """The plain line: ``lstm: step 300/1800 (17%), loss 2.10, 45 s elapsed, about 3 min left``."""
        if self.total:
            count = f"{self.unit} {self.n}/{self.total} ({100.0 * self.n / self.total:.0f}%)"
        else:
            count = f"{self.unit} {self.n}"
        parts = [f"{self.desc}: {count}"]
        if self.stage and not final:
            parts.append(self.stage)
        parts.extend(self.fields.values())
        parts.append(f"{format_duration(self.elapsed())} elapsed")
        left = None if final else self.remaining()
        if left is not None:
            parts.append(f"about {format_duration(left)} left")
        return ", ".join(parts)

    def _line(self, final: bool = False) -> None:
        self.last_line = self.clock()
        print(self.status(final=final), file=self.file, flush=True)


def stages(names: list[str], *, desc: str, progress: bool | None = None, file: TextIO | None = None) -> Progress:
    """A ``Progress`` over named stages (an evaluation's parts): call ``begin(name)`` as each
    one starts and ``update()`` as it ends. Stages differ in length, so no time left is shown."""
    return Progress(len(names), desc=desc, unit="stage", enabled=progress, file=file, estimate=False)


__all__ = ["Progress", "default_enabled", "enabled", "estimate_remaining", "format_duration", "resolve", "stages"]
