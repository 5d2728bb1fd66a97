"""`python -m fer_core trust`: which saliency methods to trust for a checkpoint (the sanity
check, deletion faithfulness and, on the built-in faces, localization, each against its
baseline, with the checks each method fails), as a table and a JSON file. The report is cached
on disk with the dashboard's, so the page opens it at once."""

import argparse
import json
import sys
from pathlib import Path

from ..atomic import write_text
from ..errors import FerError
from ..explain.settings import METHOD_KEYS, add_param_argument, given_params
from .common import add_split_argument, checkpoint_data, warn_if_other_data
from .data_options import add_read_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a run folder (its best.pt) or a .pt file")
    p.add_argument("--data", help="CSV, class-folder tree or 'builtin' (default: "
                                  "the data it was trained on)")
    add_read_arguments(p)
    add_split_argument(p, help="the probe's split (default val)")
    p.add_argument("--faces", type=int, default=16, help="probe size: the split's first N faces "
                                                         "(default 16)")
    p.add_argument("--json", required=True, help="file for the report")
    add_param_argument(p)
    p.add_argument("--device", default=None)


def run(args) -> int:
    from ..device import choose_device
    from ..explain.trust import cached_trust_report, probe_faces, probe_settings
    from ..models.checkpoint import load_checkpoint

    params = given_params(args.param, METHOD_KEYS)
    out = Path(args.json)
    if not out.parent.is_dir():
        raise FerError(f"cannot write {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise FerError(f"cannot write {out}: it is a folder")
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    data, dataset = checkpoint_data(args, ckpt)
    probe_faces(dataset, args.split, args.faces)  # refuse a bad split or size before any work
    probe_settings(ckpt.task.size, params)  # and bad parameter values
    warn_if_other_data(ckpt, dataset)
    with progress_bar() as progress:
        report = cached_trust_report(ckpt.model, ckpt.path, ckpt.arch,
                                     ckpt.arch_options, dataset, args.split,
                                     args.faces, progress=progress, params=params,
                                     task=ckpt.task)
    print(table(report))
    write_text(out, json.dumps(report.as_dict(), indent=2) + "\n")
    print(f"wrote {out}")
    return 0


class progress_bar:
    """A tqdm bar on stderr driven by (fraction, text) calls."""

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=sys.stderr, bar_format="{percentage:3.0f}% {desc}",
                        leave=False)
        return self

    def __call__(self, fraction: float, text: str) -> None:
        self.bar.n = round(100 * fraction)
        self.bar.set_description_str(text)

    def __exit__(self, *exc):
        self.bar.close()


def table(report) -> str:
    """One line per method: the sanity check's Spearman, deletion, localization where known, and
    the checks it fails; the baselines, which are the report's, once below."""
    from ..explain.trust import FAILURES, FLAG_AT

    header = f"{'method':<22} {'rho, all random':>15} {'deletion':>9} {'on parts':>9}  flags"
    lines = [f"{report.faces} faces; layers randomized top-down: {', '.join(report.layers)}",
             header]
    for m in report.methods:
        parts = "" if m.parts_share is None else f"{m.parts_share:.1%}"
        failed = report.failed_checks(m)
        flags = f"FLAGGED: {', '.join(FAILURES[c] for c in failed)}" if failed else "ok"
        lines.append(f"{m.title:<22} {m.randomization_spearman[-1]:>15.2f} "
                     f"{m.deletion_auc:>9.3f} {parts:>9}  {flags}")
    lines += ["baselines (a method is FLAGGED for each check it does no better on):",
              f"  sanity        rho {FLAG_AT:.2f} with every layer randomized (lower passes)",
              f"  deletion      {report.random_deletion_auc:.3f}, a random order's area (lower "
              f"is more faithful)"]
    if report.parts_area_share is not None:
        lines.append(f"  localization  {report.parts_area_share:.1%} on the parts, what an "
                     f"evenly spread map puts there")
    return "\n".join(lines)
