"""Trust checks' speed: the whole report (every method, the cascade, the deletion curves) on a
probe batch, beside its floor in the same run: every method's maps of the trained model alone
(what any report must compute once), so the ratio says what the cascade and deletion add.

The issue asks for the whole cnn3 report with a 16-face probe within 5 minutes on this CPU.

    python benchmarks/bench_trust.py [--checkpoint checkpoints/builtin-cnn3] [--data builtin]
        [--faces 16] [--device auto]

Results are printed and saved to benchmarks/results/trust_<device>.json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core.data.readers import load_dataset
from fer_core.device import choose_device, describe_device
from fer_core.explain.attribution import METHODS, Target, explain
from fer_core.explain.settings import probe_params
from fer_core.explain.trust import probe_faces, trust_report
from fer_core.models.checkpoint import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "builtin-cnn3"))
    parser.add_argument("--data", default="builtin")
    parser.add_argument("--faces", type=int, default=16)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    dataset = load_dataset(args.data)
    faces, parts = probe_faces(dataset, "val", args.faces)
    options = ckpt.arch_options
    print(f"{ckpt.arch} ({Path(args.checkpoint).name}), {args.faces} {args.data} val faces, "
          f"{describe_device(device)}")
    explain(ckpt.model, faces[:1], "vanilla")  # warm-up: imports, first-call allocations

    start = time.perf_counter()
    per_method = {}
    for key in METHODS:
        t = time.perf_counter()
        explain(ckpt.model, faces, key, Target("predicted"), **probe_params(key))
        per_method[key] = time.perf_counter() - t
    floor = time.perf_counter() - start

    start = time.perf_counter()
    report = trust_report(ckpt.model, ckpt.arch, options, faces, parts, task=ckpt.task)
    whole = time.perf_counter() - start

    for key, seconds in per_method.items():
        print(f"  maps of the trained model, {METHODS[key].title:<22} {seconds:7.2f} s")
    print(f"every method once (the floor):  {floor:7.1f} s")
    print(f"the whole report ({len(report.layers)} layers randomized, deletion, "
          f"{'localization' if parts is not None else 'no localization'}): {whole:7.1f} s "
          f"({whole / floor:.1f}x the floor; asked: <= 300 s for cnn3)")
    out = ROOT / "benchmarks" / "results" / f"trust_{device.type}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"arch": ckpt.arch, "checkpoint": args.checkpoint,
                               "faces": args.faces, "device": device.type,
                               "floor_s": round(floor, 2), "report_s": round(whole, 2),
                               "per_method_s": {k: round(v, 3) for k, v in per_method.items()}},
                              indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
