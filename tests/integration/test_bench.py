"""scripts/bench.py: its size parsing, report and plot, and one small real run."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from mailhygiene.devtools import dovecot_binary

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402


def _figures() -> list[bench.Figure]:
    figures = []
    for n in (1000, 10_000):
        scale = n / 1000
        figures += [
            bench.Figure("floor: raw UID FETCH", 0.1 * scale, step="floor.fetch", messages=n),
            bench.Figure(
                "floor: raw fetch + compat32 parse", 0.2 * scale, step="floor.parse", messages=n
            ),
            bench.Figure(
                "initial sync [sqlite]",
                0.25 * scale,
                0.2 * scale,
                "≤ 1.5× floor",
                True,
                step="sync.initial",
                kind="sqlite",
                messages=n,
            ),
            bench.Figure(
                "rss",
                80 + n / 1000,
                goal="≤ 300 MB",
                ok=True,
                step="rss",
                kind="sqlite",
                unit="MB",
                messages=n,
            ),
        ]
    return figures


@pytest.mark.parametrize(
    ("text", "count"),
    [("100000", 100_000), ("100_000", 100_000), ("30k", 30_000), ("1M", 1_000_000), ("2.5k", 2500)],
)
def test_sizes_accept_plain_and_suffixed_counts(text: str, count: int) -> None:
    assert bench.parse_size(text) == count


def test_sizes_are_sorted_deduplicated_and_checked() -> None:
    assert bench.parse_sizes("30k,10000,30000") == [10_000, 30_000]
    with pytest.raises(Exception, match="not a message count"):
        bench.parse_sizes("10k,lots")
    with pytest.raises(Exception, match="at least 100"):
        bench.parse_size("5")


def test_report_has_machine_command_scaling_and_goals() -> None:
    figures = _figures()
    machine = {"CPU": "Test CPU — 2 logical CPUs", "Date": "2026-11-01 12:00 UTC"}
    report = bench.render_report(
        figures, [1000, 10_000], machine, "python3 scripts/bench.py --sizes 1k,10k", "b.png"
    )
    assert "| CPU | Test CPU — 2 logical CPUs |" in report
    assert "python3 scripts/bench.py --sizes 1k,10k" in report
    assert "![seconds and peak RSS vs mailbox size](b.png)" in report
    assert "| step | 1,000 (s) | 10,000 (s) | 1,000 (µs/msg) | 10,000 (µs/msg) |" in report
    assert "| initial sync [sqlite] | 0.25 | 2.50 | 250.0 | 250.0 |" in report
    assert "| 10,000 | initial sync [sqlite] | 2.50 s (1.25×) | ≤ 1.5× floor | met |" in report
    assert "### 1,000 messages" in report
    assert "### 10,000 messages" in report


def test_cpu_steal_is_the_stolen_share_of_the_cpu_time_between_two_readings() -> None:
    assert bench.steal_text((1000, 10), (3000, 60)) == (
        "2.5% of CPU time went to other guests of the hypervisor (figures vary with it)"
    )
    assert bench.steal_text((1000, 10), (1000, 10)) is None
    total, stolen = bench.cpu_ticks()
    assert total >= stolen >= 0


def test_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "bench.png"
    bench.write_plot(target, _figures(), [1000, 10_000], "test")
    assert target.read_bytes().startswith(b"\x89PNG")


def test_plot_without_matplotlib_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)
    assert bench.main(["--sizes", "1000", "--plot", "x.png"]) == 2
    assert "pip install -e '.[bench]'" in capsys.readouterr().err


def rounds_of(note: str) -> list[float]:
    """The values a figure's note lists after "median of N: " (``bench.rounds_note``)."""
    match = re.search(r"median of (\d+): ([\d., ]+) s", note)
    assert match is not None, note
    runs = [float(run) for run in match.group(2).split(", ")]
    assert len(runs) == int(match.group(1))
    return runs


@pytest.mark.dovecot
@pytest.mark.slow
def test_small_run_measures_every_index_figure(tmp_path: Path) -> None:
    if dovecot_binary("dovecot") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must provide Dovecot and root", pytrace=False)
        pytest.skip("the throwaway Dovecot needs dovecot-imapd and root")
    report = tmp_path / "report.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--sizes",
            "2000",
            "--skip-move",
            "--repeat",
            "2",
            "--json",
            "--markdown",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    steps = {f["step"] for f in figures}
    assert steps == {
        "floor.fetch",
        "floor.parse",
        "sync.initial",
        "rss",
        "rss.process",
        "floor.nochange",
        "sync.nochange",
        "floor.plus1",
        "sync.plus1",
        "link",
        "verdicts",
        "plan",
    }
    assert {f["messages"] for f in figures} == {2000}
    initial = next(f for f in figures if f["step"] == "sync.initial")
    assert initial["ratio"] == pytest.approx(initial["seconds"] / initial["floor"])
    floor = next(f for f in figures if f["step"] == "floor.parse")
    for figure, rounds in ((initial, 2), (floor, 2)):
        runs = rounds_of(figure["note"])
        assert len(runs) == rounds
        assert figure["seconds"] == pytest.approx(statistics.median(runs), abs=0.006)
    plus1 = next(f for f in figures if f["step"] == "sync.plus1")
    assert plus1["note"] == "20 new"
    assert plus1["ratio"] == pytest.approx(plus1["seconds"] / plus1["floor"])
    plan = next(f for f in figures if f["step"] == "plan")
    runs = rounds_of(plan["note"])
    assert len(runs) == 3
    assert plan["seconds"] == pytest.approx(statistics.median(runs), abs=0.006)
    assert "generated 2,000 messages" in done.stderr
    text = report.read_text(encoding="utf-8")
    assert "## Machine" in text
    assert "--sizes 2000 --skip-move" in text
