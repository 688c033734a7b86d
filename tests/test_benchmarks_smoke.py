"""The benchmark suite runs and writes its results: a smoke test, no speed asserted.

Speed is measured by `python -m benchmarks`, never asserted in a test (the
VM is shared and noisy). This only checks that the fastest figure runs end
to end, pinned and unpinned, and that its JSON has the shape the table and
later issues rely on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_rtt_run_writes_value_limit_and_ratio(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "rtt",
            "--no-peers",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert list(doc["figures"]) == ["rtt"]
    fig = doc["figures"]["rtt"]
    assert fig["unit"] == "us"
    for mode in ("pinned", "unpinned"):
        result = fig[mode]
        assert "error" not in result, result.get("error")
        for key in ("value", "limit", "ratio"):
            assert set(result[key]) >= {"median", "min", "max", "n"}, key
            assert result[key]["n"] == 2
            assert result[key]["median"] > 0
        assert "target_met" in result  # judged, whatever the verdict
        assert not result.get("leftover_processes")
    assert fig["pinned"]["cpus"] == [0]
    assert "send/receive round trip" in proc.stdout


@pytest.mark.slow
@pytest.mark.erlang
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_quick_dist_run_writes_each_figure_next_to_erlangs_from_the_same_run(
    tmp_path: Path, tls: bool
) -> None:
    # python -m benchmarks.bench_dist: two erl nodes, two Python nodes, a
    # private epmd, pinned then unpinned; tiny counts, so it only proves the
    # benchmark still runs end to end and leaves nothing behind.
    from otp.dist._testing import require_erl

    require_erl()
    out = tmp_path / "results_dist.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_dist",
            "--quick",
            "--reps",
            "1",
            "--target-s",
            "0.005",
            "--kills",
            "1",
            "--out",
            str(out),
            *(["--tls"] if tls else []),
        ],
        cwd=REPO,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=55,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["meta"]["modes"] == ["pinned", "unpinned"]
    assert doc["meta"]["tls"] is tls
    assert set(doc["figures"]) >= {"call_py_py", "cast_py_py", "kill_down_py_py"}
    for name, fig in doc["figures"].items():
        assert fig["limit_name"].startswith("erl"), name
        for mode in ("pinned", "unpinned"):
            result = fig[mode]
            assert "error" not in result, (name, mode, result.get("error"))
            for key in ("value", "limit", "ratio"):
                assert result[key]["n"] == 1 and result[key]["median"] > 0, (name, mode, key)
        assert fig["pinned"]["cpus"] == [0]
    assert "target_met" in doc["figures"]["call_py_py"]["pinned"]  # judged, whatever the verdict
    assert "remote gen_server.call round trip" in proc.stdout
