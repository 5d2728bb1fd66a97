"""`python -m benchmarks`: a tiny real run of two benchmarks, a failing one, a timeout, the rows'
speed-up direction and the README update."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import report, runner, suite

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--args", "builtin=--n 300 --repeats 1 --loop 20",
        "--args", "attribution=--repeats 1 --faces 2 --methods vanilla,gradcam"]
ATTRIBUTION_ROWS = 2 + 3  # the two methods beside Captum-direct, then the one-face figures


def run_suite(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out),
                           *args], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("suite")
    return run_suite(out, "--only", "builtin,attribution", *TINY), out


def test_a_tiny_run_rows_pair_each_time_with_its_baseline(tiny_run):
    done, out = tiny_run
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = json.loads((out / "suite.json").read_text())
    assert data["mode"] == "quick" and data["seconds"] > 0
    assert [(b["name"], b["status"], b["exit_code"]) for b in data["benchmarks"]] == [
        ("builtin", "ok", 0), ("attribution", "ok", 0)]
    assert data["benchmarks"][0]["raw"]["n"] == 300
    rows = [r for b in data["benchmarks"] for r in b["rows"]]
    assert [r["benchmark"] for r in rows] == ["builtin"] + ["attribution"] * ATTRIBUTION_ROWS
    assert [r["baseline"] for r in rows[1:3]] == ["Captum direct"] * 2
    for r in rows:
        assert r["unit"] == "s" and r["value"] > 0 and r["baseline_value"] > 0
        assert r["speedup"] == pytest.approx(r["baseline_value"] / r["value"])


def test_a_tiny_run_writes_the_markdown_and_streams_progress(tiny_run):
    done, out = tiny_run
    text = (out / "suite.md").read_text()
    first = text.splitlines()[0]
    assert first.startswith("Machine: ") and f"torch {torch.__version__}" in first
    assert f"Command: `python -m benchmarks --quick --out {out}" in text
    assert text.count("\n| builtin |") == 1
    assert text.count("\n| attribution |") == ATTRIBUTION_ROWS
    assert report.SPEEDUP_NOTE in text and "Failed" not in text
    assert "[builtin] make_builtin_faces(300)" in done.stdout
    assert text in done.stdout


def test_a_failing_benchmark_is_recorded_and_the_suite_exits_1(tiny_run, tmp_path):
    stale = runner.RESULTS / "builtin.json"
    assert stale.exists()  # the tiny run's: the failed run must not read it back
    done = run_suite(tmp_path, "--only", "builtin", "--args", "builtin=--bogus")
    assert done.returncode == 1
    record = json.loads((tmp_path / "suite.json").read_text())["benchmarks"][0]
    assert (record["status"], record["exit_code"], record["rows"]) == ("failed", 2, [])
    assert any("unrecognized arguments: --bogus" in line for line in record["stderr_tail"])
    assert not stale.exists()
    assert "- builtin (exit code 2)" in (tmp_path / "suite.md").read_text()


def test_a_benchmark_past_its_timeout_is_killed():
    code, timed_out, _ = runner.stream([sys.executable, "-c", "import time; time.sleep(60)"],
                                       "sleep", timeout=1)
    assert timed_out and code != 0


def test_throughput_rows_read_in_the_same_direction_as_time_rows():
    raw = {"precisions": {"fp32": {"bare_images_per_s": 100.0, "trainer_images_per_s": 80.0},
                          "bf16": {"bare_images_per_s": 300.0, "trainer_images_per_s": 240.0}},
           "steps_per_epoch": 12, "batch_size": 128}
    rows = suite.train_rows(raw)
    assert [(r["baseline"], r["speedup"]) for r in rows] == [
        ("bare loop, fp32", 0.8), ("bare loop, bf16", 0.8), ("bare loop, fp32", 2.4)]
    assert rows[0]["measure"] == "trainer, fp32, 12 steps of 128 per epoch"
    assert suite.row("x", "ours", 2.0, "base", 1.0)["speedup"] == 0.5


def test_readme_table_replaces_only_the_text_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold table\n{report.END}\noutro\n")
    report.update_readme(readme, "new table\n")
    assert readme.read_text() == f"intro\n{report.START}\nnew table\n{report.END}\noutro\n"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="lacks the lines"):
        report.update_readme(readme, "new table\n")
