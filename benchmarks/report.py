"""The suite's report: the machine it ran on, suite.json, suite.md, and README.md's table."""

import json
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
SPEEDUP_NOTE = ("Speed-up = the baseline's time / ours (for img/s rows: our img/s / the "
                "baseline's), both measured in the same run on the same machine: above 1 is "
                "faster than the baseline, below 1 slower.")


def machine() -> dict:
    """What the figures depend on: CPU, cores and threads, RAM, GPUs, versions, OS, commit."""
    import torch
    import torchvision

    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    return {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "ram_gib": ram_gib(), "gpus": gpus,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "os": platform.platform(),
            "commit": git_commit()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def git_commit() -> str:
    """The short hash, with '+dirty' when the working tree has changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain")
                                                      else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_line(suite: dict) -> str:
    m = suite["machine"]
    ram = f", {m['ram_gib']} GiB RAM" if m["ram_gib"] else ""
    return (f"{m['cpu']}, {m['logical_cores']} logical cores ({m['torch_threads']} torch "
            f"threads){ram}, GPU: {', '.join(m['gpus']) or 'none'}; torch {m['torch']}, "
            f"torchvision {m['torchvision']}, Python {m['python']}, {m['os']}; commit "
            f"{m['commit']}; {suite['started'][:16].replace('T', ' ')}; 1-minute load average "
            f"{suite['load_start']} at the start, {suite['load_end']} at the end (a shared "
            f"machine: other work may have run alongside)")


def fmt(value: float, unit: str) -> str:
    if unit == "img/s":
        return f"{value:,.0f} img/s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1e3:.1f} ms" if value >= 1e-3 else f"{value * 1e6:.1f} µs"


def fmt_speedup(ratio: float) -> str:
    """Two decimals, but two significant digits below 0.1 (never a bare 0.00x)."""
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def table(records: list[dict]) -> str:
    lines = [("| Benchmark | Measure | Time (or img/s) | Baseline | Baseline time (or img/s) | "
              "Speed-up |"),
             "|---|---|---:|---|---:|---:|"]
    for r in (r for record in records for r in record["rows"]):
        lines.append(f"| {r['benchmark']} | {r['measure']} | {fmt(r['value'], r['unit'])} | "
                     f"{r['baseline']} | {fmt(r['baseline_value'], r['unit'])} | "
                     f"{fmt_speedup(r['speedup'])} |")
    return "\n".join(lines)


def markdown(suite: dict) -> str:
    parts = [f"Machine: {machine_line(suite)}.", f"Command: `{suite['command']}`",
             table(suite["benchmarks"]), SPEEDUP_NOTE]
    failed = [r for r in suite["benchmarks"] if r["status"] != "ok"]
    if failed:
        parts.append("Failed:\n\n" + "\n".join(
            f"- {r['name']} ({r['error']}): `{(r.get('stderr_tail') or [''])[-1]}`"
            for r in failed))
    return "\n\n".join(parts) + "\n"


def write(out: Path, suite: dict) -> str:
    """Write suite.json and suite.md into `out`; return the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.json").write_text(json.dumps(suite, indent=2) + "\n")
    text = markdown(suite)
    (out / "suite.md").write_text(text)
    return text


def check_markers(readme: Path) -> str:
    """README.md's text, or exit with one line when it lacks the benchmark markers."""
    text = readme.read_text()
    lines = text.splitlines()
    if START not in lines or END not in lines or lines.index(START) > lines.index(END):
        raise SystemExit(f"{readme.name} lacks the lines {START} and {END} (in that order); "
                         "add them where the table belongs")
    return text


def update_readme(readme: Path, text: str) -> None:
    """Replace what lies between the marker lines of `readme` with `text`."""
    lines = check_markers(readme).splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == START)
    end = next(i for i, line in enumerate(lines) if line.rstrip("\n") == END)
    readme.write_text("".join(lines[:start + 1]) + text + "".join(lines[end:]))
