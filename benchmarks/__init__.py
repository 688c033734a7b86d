"""The benchmark suite: every figure of DESIGN.md's "Numbers", next to its limit.

Run from the repository root:

```
python -m benchmarks                 # everything, pinned and unpinned (~1-2 min)
python -m benchmarks --quick         # 2 short repetitions: a smoke run
python -m benchmarks --only rtt      # one figure (or a group: kernel, peers)
python -m benchmarks --no-peers      # without Thespian and Pykka
python -m benchmarks --list          # what there is
```

It prints a table and writes `benchmarks/results.json`.

The rules (DESIGN.md): speed is measured here, never asserted in a test. Each
figure is reported next to the machine's limit measured in the same run,
interleaved with it, as a ratio taken per repetition; the median of the
repetitions is given with their min-max. Every figure runs twice, in a worker
process pinned to one CPU (`taskset -c 0`) and unpinned. On this 2-vCPU VM the
pinned ratios are the ones to compare: unpinned, a cross-CPU wakeup costs
about 5x a same-CPU one, and the scheduler's placement makes runs bimodal.

Layout:
- `_core`: the figure registry (`@figure`), `Target`, `interleave` and
  `calibrate` (the repetition loop), statistics.
- `limit`: the limit (forked echo over socketpair + pickle-5 frames; bare
  `os.fork`; USS).
- `kernel`: otp's message round trip, one-way throughput, spawn, idle memory.
- `peers`: Thespian (queue and TCP bases) and Pykka ask round trips, optional.
- `_driver`: the command line, the pinned/unpinned workers, the table.

To add figures (GenServer, Supervisor...), write a module like `kernel` and
list it in `_core.FIGURE_MODULES`.
"""

from __future__ import annotations

from ._core import FIGURES, Config, Figure, Samples, Skip, Target, figure, interleave

__all__ = ["FIGURES", "Config", "Figure", "Samples", "Skip", "Target", "figure", "interleave"]
