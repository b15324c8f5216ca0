"""Live progress of a sweep on stderr: one line per run (status, tokens, loss, tokens/s).

On a terminal the table is redrawn in place (at most a few times a
second); otherwise (a log file, a pipe) one line is printed each time a run
starts or ends, so logs stay short.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class RunState:
    label: str
    status: str = "queued"
    tokens: int = 0
    budget: float = 0.0
    loss: float | None = None
    tokens_per_second: float | None = None
    started: float | None = None
    note: str = ""


@dataclass
class ProgressTable:
    """Status of every run of a sweep, drawn on ``stream``.

    Attributes:
        enabled: draw anything at all.
        stream: where to draw (stderr).
        interval_s: least time between two redraws on a terminal.
    """

    enabled: bool = True
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    interval_s: float = 0.5
    runs: dict[str, RunState] = field(default_factory=dict)
    _lines: int = 0
    _last: float = 0.0

    def add(self, run_id: str, label: str, budget: float) -> None:
        self.runs[run_id] = RunState(label=label, budget=budget)

    @property
    def live(self) -> bool:
        return self.enabled and self.stream.isatty()

    def update(self, run_id: str, **changes: Any) -> None:
        state = self.runs[run_id]
        old_status = state.status
        for key, value in changes.items():
            setattr(state, key, value)
        if state.status == "running" and state.started is None:
            state.started = time.monotonic()
        if not self.enabled:
            return
        if self.live:
            self.draw()
        elif state.status != old_status:
            self.stream.write(self._line(run_id, state) + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        """A warning line on the stream, shown even without the table (redrawn below it)."""
        self.stream.write(text + "\n")
        self.stream.flush()
        self._lines = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for state in self.runs.values():
            out[state.status] = out.get(state.status, 0) + 1
        return out

    def summary(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in sorted(self.counts().items()))

    def _line(self, run_id: str, s: RunState) -> str:
        loss = f"{s.loss:.4f}" if s.loss is not None else "-"
        speed = f"{s.tokens_per_second:,.0f}" if s.tokens_per_second else "-"
        frac = f"{min(s.tokens / s.budget, 1.0):4.0%}" if s.budget and s.tokens else "   -"
        return f"{run_id}  {s.status:<13} {frac} loss {loss:>8}  tok/s {speed:>9}  {s.label} {s.note}".rstrip()

    def draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        rows = list(self.runs.items())
        room = max(5, shutil.get_terminal_size((100, 30)).lines - 2)
        if len(rows) > room:  # a long sweep: the runs in progress first
            busy = [r for r in rows if r[1].status == "running"]
            rest = [r for r in rows if r[1].status != "running"]
            rows = busy[:room] + rest[: max(0, room - len(busy))]
        lines = [self._line(rid, s) for rid, s in rows]
        lines.append(f"-- {self.summary()}")
        out = (f"\x1b[{self._lines}F" if self._lines else "") + "".join(f"\x1b[2K{ln}\n" for ln in lines)
        self.stream.write(out)
        self.stream.flush()
        self._lines = len(lines)

    def close(self) -> None:
        if self.live:
            self.draw(force=True)
        elif self.enabled:
            self.stream.write(f"-- {self.summary()}\n")
            self.stream.flush()
