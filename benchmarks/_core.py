"""The figure registry, the measuring discipline and the statistics.

A *figure* is one number this project promises (DESIGN.md, "Numbers"),
measured next to *the limit*: what the machine does with no runtime at all,
in the same process invocation, interleaved with the figure. Each repetition
yields one figure value and one limit value, and their ratio is taken per
repetition, so noise that hits a repetition hits both sides alike. A figure is
reported as the median of its per-repetition values with their min-max.

To add a figure, write a function in a module listed in `FIGURE_MODULES` and
decorate it with `@figure(...)`. The function takes a `Config` and returns a
`Samples`; `interleave` and `calibrate` below do the repetition loop for the
common case of "figure vs limit, both callables of an iteration count".
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FIGURES",
    "FIGURE_MODULES",
    "Config",
    "Figure",
    "Samples",
    "Skip",
    "Target",
    "calibrate",
    "figure",
    "interleave",
    "load_figures",
    "summarize",
]

#: Modules whose import registers figures, in table order. The GenServer and
#: Supervisor issues add theirs here.
FIGURE_MODULES = ("benchmarks.kernel", "benchmarks.gen_server_figures", "benchmarks.peers")


@dataclass(frozen=True)
class Config:
    """How hard a worker measures.

    Attributes:
        reps: repetitions; each yields one figure value and one limit value.
        target_s: the wall time aimed at for one measurement (one side of a
            repetition); iteration counts are calibrated to it.
    """

    reps: int = 5
    target_s: float = 0.4


@dataclass(frozen=True)
class Target:
    """What a figure promises: `ratio <= 1.3`, `value <= 2.0`, `ratio >= 0.5`...

    `on` is "ratio" (figure / limit, per repetition) or "value" (the figure in
    its own unit). Targets are judged on the median.
    """

    on: str
    op: str
    bound: float

    def met(self, value: float, ratio: float) -> bool:
        x = ratio if self.on == "ratio" else value
        return x <= self.bound if self.op == "<=" else x >= self.bound

    def describe(self, unit: str) -> str:
        if self.on == "ratio":
            return f"{self.op} {self.bound:g}x limit"
        return f"{self.op} {self.bound:g} {unit}"

    def to_json(self) -> dict[str, Any]:
        return {"on": self.on, "op": self.op, "bound": self.bound}


@dataclass
class Samples:
    """What a figure function returns: one value per repetition for the figure
    and for the limit (same length, same order), plus anything worth keeping
    (iteration counts, notes)."""

    values: list[float]
    limits: list[float]
    extra: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """Raised by a figure that cannot run here (a peer not installed...)."""


@dataclass(frozen=True)
class Figure:
    """A registered figure: its identity, its limit, its target, its function."""

    name: str
    title: str
    unit: str
    group: str
    limit_name: str
    target: Target | None
    fn: Callable[[Config], Samples]
    requires: tuple[str, ...] = ()
    doc: str = ""

    def missing(self) -> list[str]:
        """The required modules that are not importable here."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


FIGURES: dict[str, Figure] = {}


def figure(
    name: str,
    *,
    title: str,
    unit: str,
    group: str,
    limit: str,
    target: Target | None = None,
    requires: tuple[str, ...] = (),
) -> Callable[[Callable[[Config], Samples]], Callable[[Config], Samples]]:
    """Register the decorated function as figure `name` (its docstring says
    what it measures and why)."""

    def register(fn: Callable[[Config], Samples]) -> Callable[[Config], Samples]:
        if name in FIGURES:
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES[name] = Figure(
            name=name,
            title=title,
            unit=unit,
            group=group,
            limit_name=limit,
            target=target,
            fn=fn,
            requires=requires,
            doc=" ".join((fn.__doc__ or "").split()),
        )
        return fn

    return register


def load_figures() -> dict[str, Figure]:
    """Import every figure module; returns the registry, in table order."""
    for mod in FIGURE_MODULES:
        importlib.import_module(mod)
    return FIGURES


# ------------------------------------------------------------------ measuring

#: A measurement: run `n` iterations, return the figure's value for them
#: (µs per round trip, messages per second...).
Measure = Callable[[int], float]


def calibrate(measure: Measure, target_s: float, lo: int = 5, hi: int = 1_000_000) -> int:
    """An iteration count for which one call of `measure` takes about `target_s`.

    Doubles a trial count until a trial takes at least 1/8 of the target (or
    20 ms), then scales; the trials double as warm-up.
    """
    n = lo
    floor = min(0.02, target_s / 8)
    while True:
        t0 = time.perf_counter()
        measure(n)
        dt = time.perf_counter() - t0
        if dt >= floor or n >= hi:
            break
        n *= 2
    return int(max(lo, min(hi, n * target_s / max(dt, 1e-9))))


def interleave(
    cfg: Config,
    fig: Measure,
    limit: Measure,
    *,
    fig_n: int | None = None,
    limit_n: int | None = None,
) -> Samples:
    """Measure `fig` and `limit` alternately, `cfg.reps` times.

    Each side's iteration count is calibrated to `cfg.target_s` (unless given).
    The order within a repetition alternates, so neither side always runs
    second (on a warmer cache, or after the other side's garbage).
    """
    if fig_n is None:
        fig_n = calibrate(fig, cfg.target_s)
    if limit_n is None:
        limit_n = calibrate(limit, cfg.target_s)
    values: list[float] = []
    limits: list[float] = []
    for rep in range(cfg.reps):
        order = ((values, fig, fig_n), (limits, limit, limit_n))
        if rep % 2:
            order = order[::-1]
        for out, measure, n in order:
            gc.collect()
            out.append(measure(n))
    return Samples(values, limits, {"n_iter": fig_n, "limit_n_iter": limit_n})


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, min, max and n of per-repetition values (and the values)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }
