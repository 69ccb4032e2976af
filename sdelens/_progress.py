"""Progress of long computations: a bar with the time left, or one plain line per step.

Networks, Entropy-SGD studies, sweeps and ensembles of many chunks run for minutes, and a silent
terminal cannot be told apart from a hung one. The loops that take long announce their work with
`task(description, total)` and call `advance()` after each unit; *whether and how* that is shown
is decided by the caller, who wraps the computation in `reporting()` (public as
`sdelens.progress`; the command line does this for every command):

```python
import sdelens as sl

with sl.progress():            # a rich bar on a terminal or in Jupyter, plain lines otherwise
    sweep = sl.noise_sweep(...)
```

The active reporter lives in a context variable, so the library passes nothing around and a
loop without a reporter above it pays one `ContextVar.get` per task (no output, no import of
`rich`: rich is imported only when a bar is actually drawn). Tasks nest (a sweep's points, each
running chunks of paths); a task of fewer than 2 units draws no bar of its own (a single chunk,
a single optimizer), which keeps the display to the loops whose progress means something.

This module is the lowest layer of the package: it imports nothing from sdelens and not JAX.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import sys
import time
from collections.abc import Iterator
from typing import IO

__all__ = ["task", "reporting", "progress", "note", "active", "KINDS"]

KINDS = ("auto", "bar", "lines", "off")

_active: contextvars.ContextVar[_Reporter | None] = contextvars.ContextVar(
    "sdelens_progress", default=None
)


class _Null:
    """The task of a loop no reporter watches: every call is a no-op."""

    __slots__ = ()

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def advance(self, n: int = 1) -> None:
        return None


_NULL = _Null()


class _Task:
    """One announced loop: `total` units, `advance(n)` after each `n` done."""

    __slots__ = ("_reporter", "description", "total", "completed", "started", "depth", "_id")

    def __init__(self, reporter: _Reporter, description: str, total: int):
        self._reporter = reporter
        self.description = description
        self.total = total
        self.completed = 0
        self.started = 0.0
        self.depth = 0
        self._id = None

    def __enter__(self) -> _Task:
        self.started = time.perf_counter()
        self._reporter.begin(self)
        return self

    def __exit__(self, *exc) -> None:
        self._reporter.end(self)

    def advance(self, n: int = 1) -> None:
        self.completed += n
        self._reporter.advanced(self)


def task(description: str, total: int) -> _Task | _Null:
    """A context manager announcing a loop of `total` units; it yields an object whose
    `advance(n=1)` is called after each unit (or `n` of them) is done.

    Without an active reporter (`reporting`) this is a no-op costing one context-variable
    look-up. A task of fewer than 2 units is not shown either: a bar that jumps from 0 to done
    tells nothing and, nested in a sweep, would only add noise.
    """
    reporter = _active.get()
    if reporter is None or total < 2:
        return _NULL
    return _Task(reporter, description, int(total))


def note(message: str) -> None:
    """Print a one-line message through the active reporter (above a live bar, not across it);
    without a reporter nothing is printed."""
    reporter = _active.get()
    if reporter is not None:
        reporter.note(str(message))


def active() -> bool:
    """Whether a reporter is active here (a `reporting` block other than `"off"`)."""
    return _active.get() is not None


@contextlib.contextmanager
def reporting(kind: str = "auto", stream: IO[str] | None = None) -> Iterator[None]:
    """Show the progress of the tasks run inside the block on `stream` (default: `sys.stderr`
    at the time of the call, so that redirections made before it are honoured).

    `kind`: `"bar"` a rich progress bar (description, bar, done/total, elapsed, time left);
    `"lines"` one plain line per step, e.g. `noise scale sweep: 3/10, 12 s elapsed, about 28 s
    left` (the estimate is the mean time per completed unit times the units left), which is
    what a log file or CI wants; `"auto"` the bar when `stream` is a terminal or the code runs
    in a Jupyter notebook, lines otherwise; `"off"` nothing, also for tasks and notes of an
    enclosing block (to silence one call). Stdout is left alone, so that what a command prints
    there stays parseable.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid: choose one of {', '.join(KINDS)}.")
    stream = sys.stderr if stream is None else stream
    if kind == "auto":
        kind = "bar" if _isatty(stream) or (_in_notebook() and _is_std(stream)) else "lines"
    reporter = None if kind == "off" else (_Bar(stream) if kind == "bar" else _Lines(stream))
    token = _active.set(reporter)
    try:
        yield
    finally:
        _active.reset(token)
        if reporter is not None:
            reporter.close()


progress = reporting  # public as `sdelens.progress` (the lazy stub exports names, not aliases)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _is_std(stream) -> bool:
    return stream is sys.stderr or stream is sys.stdout


def _in_notebook() -> bool:
    """A Jupyter (or Colab) kernel, where rich renders its bar as a widget."""
    get_ipython = getattr(builtins, "get_ipython", None)
    if get_ipython is None:
        return False
    shell = get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell" or "google.colab" in str(type(shell))


def duration(seconds: float) -> str:
    """`0.4 s`, `12 s`, `3 min 05 s`, `2 h 07 min`: as precise as a glance needs."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class _Reporter:
    """Keeps the stack of open tasks; subclasses draw them."""

    def __init__(self, stream):
        self.stream = stream
        self.open: list[_Task] = []

    def begin(self, t: _Task) -> None:
        t.depth = len(self.open)
        self.open.append(t)

    def end(self, t: _Task) -> None:
        if t in self.open:
            self.open.remove(t)

    def advanced(self, t: _Task) -> None:
        raise NotImplementedError

    def note(self, message: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.open.clear()


class _Lines(_Reporter):
    """One line per step, nested tasks indented: readable in a log, no terminal needed."""

    def advanced(self, t: _Task) -> None:
        elapsed = time.perf_counter() - t.started
        line = f"{'  ' * t.depth}{t.description}: {t.completed}/{t.total}, "
        line += f"{duration(elapsed)} elapsed"
        if 0 < t.completed < t.total:
            line += f", about {duration(elapsed / t.completed * (t.total - t.completed))} left"
        self.note(line)

    def note(self, message: str) -> None:
        self.stream.write(message + "\n")
        self.stream.flush()


class _Bar(_Reporter):
    """A rich progress display, live while a task is open: rows of nested tasks vanish when
    they end, the outermost row stays as a record. Between tasks nothing is live, so what is
    printed then (a command's tables) is never overwritten by a redraw."""

    def __init__(self, stream):
        super().__init__(stream)
        self._console = None
        self._live = None

    def begin(self, t: _Task) -> None:
        super().begin(t)
        if self._live is None:
            self._live = self._progress()
            self._live.start()
        t._id = self._live.add_task("  " * t.depth + t.description, total=t.total)

    def end(self, t: _Task) -> None:
        super().end(t)
        if self._live is None or t._id is None:
            return
        if t.depth > 0:
            self._live.remove_task(t._id)
        if not self.open:
            self._live.stop()
            self._live = None

    def advanced(self, t: _Task) -> None:
        if self._live is not None and t._id is not None:
            self._live.update(t._id, completed=t.completed)

    def note(self, message: str) -> None:
        self.console().print(message, markup=False, highlight=False, emoji=False)

    def close(self) -> None:
        super().close()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream)
        return self._console

    def _progress(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=self.console(),
            transient=False,
            # stdout goes where the user sent it (a file, a pipe): only when it is the same
            # screen is it printed above the bar instead of across it
            redirect_stdout=_isatty(sys.stdout) and _isatty(self.stream),
        )
