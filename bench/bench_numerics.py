"""What the numeric pins cost in speed: pinned / unpinned time ratios, measured in one run.

The pins (:mod:`genreflow.core.numerics`: MKL's COMPATIBLE branch, ATen's AVX2 kernels, no
oneDNN or NNPACK, deterministic CUDA) act only before torch first computes, so each mode runs
in its own child process; the modes alternate for ``--rounds`` rounds and each keeps its best
time. Workloads, at the default recipe's shapes (96 mels x 130 frames):

- ``frontend``: log-mel features of 30 s of audio (what spectrogramize and serving compute);
- ``train_cnn`` / ``train_crnn``: one SGD step (forward, backward, update) on 32 segments;
- ``infer_cnn``: a forward pass on 64 segments (evaluate, predict, the index).

A ratio above 1 is the pins' slowdown. Both modes use the same ``--threads`` (the recipe's
``threads``), so the ratio isolates the code paths.

    .venv/bin/python bench/bench_numerics.py
    .venv/bin/python bench/bench_numerics.py --device cuda --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable

MODES = ("unpinned", "pinned")


def _best_of(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up: allocator, lazy initialisation
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def child(mode: str, threads: int, device: str, repeats: int) -> dict[str, float]:
    from genreflow.core.numerics import numeric_environment, pin_numerics

    pin_numerics(threads, pinned=mode == "pinned")
    import torch

    from genreflow.core.config import FeatureParams, TrainParams
    from genreflow.features.frontend import LogMelFrontend
    from genreflow.models import build_classifier

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    features = FeatureParams()
    gen = torch.Generator().manual_seed(0)
    wave = (0.1 * torch.randn(1, features.sample_rate * 30, generator=gen)).to(device)
    frontend = LogMelFrontend(features).to(device)
    batch = torch.randn(64, 96, 130, generator=gen).to(device)
    labels = torch.arange(32, device=device) % 10
    recipes = {
        "cnn": TrainParams(),
        "crnn": TrainParams(arch="crnn", batch_norm=True, channels=(16, 32, 64, 64), dense=()),
    }
    times: dict[str, float] = {}
    with torch.no_grad():
        times["frontend"] = _best_of(lambda: frontend.segments(wave), repeats, sync)
    for arch, recipe in recipes.items():
        model = build_classifier(recipe, 96, 130, 10).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(batch[:32]), labels).backward()
            opt.step()

        times[f"train_{arch}"] = _best_of(step, repeats, sync)
        if arch == "cnn":
            model.eval()
            with torch.no_grad():
                times["infer_cnn"] = _best_of(lambda model=model: model(batch), repeats, sync)
    env = numeric_environment()
    return {"times": times, "capability": env["aten_cpu_capability"], "cpu": env["cpu_model"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="recipe threads (params `threads`)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--rounds", type=int, default=2, help="child processes per mode")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per workload")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.device, args.repeats)))
        return

    best: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
    info: dict[str, str] = {}
    for _ in range(args.rounds):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--child", mode, "--threads", str(args.threads)]
            cmd += ["--device", args.device, "--repeats", str(args.repeats)]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
            info[mode] = out["capability"]
            info["cpu"] = out["cpu"]
            for name, seconds in out["times"].items():
                best[mode][name] = min(best[mode].get(name, float("inf")), seconds)
    ratios = {name: best["pinned"][name] / best["unpinned"][name] for name in best["pinned"]}
    print(
        f"{info['cpu']}, {args.device}, {args.threads} threads; ATen kernels "
        f"unpinned {info['unpinned']}, pinned {info['pinned']}",
        file=sys.stderr,
    )
    for name, ratio in ratios.items():
        print(f"  {name:12} pinned / unpinned time = {ratio:.2f}", file=sys.stderr)
    print(json.dumps({"device": args.device, "threads": args.threads, "ratios": ratios}))


if __name__ == "__main__":
    main()
