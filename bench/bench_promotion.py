"""How often the promotion gate moves ``champion``: simulated evaluations, real decision code.

Each simulated evaluation draws per-clip correctness for a champion and a candidate on the
same ``n`` test clips, then calls :func:`genreflow.registry.decision.paired_bootstrap` and
:func:`~genreflow.registry.decision.gate` exactly as ``evaluate`` does (same alpha, margin
and bootstrap size as ``params.yaml``). Correctness comes from a shared latent difficulty per
clip, so the two models' errors correlate by ``rho`` (0: independent; real models trained
on the same data sit well above 0). Reported per scenario: the promotion rate over
``--evaluations`` draws with its Wilson 95% interval.

    .venv/bin/python bench/bench_promotion.py                    # the issue's scenarios
    .venv/bin/python bench/bench_promotion.py --evaluations 5000 --rho 0.5

Aims: equal models are promoted in <= 5% of evaluations at n = 120 and n = 290; a candidate
10 points better is promoted in >= 80% at n = 290.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from genreflow.registry.decision import gate, paired_bootstrap


@dataclass(frozen=True)
class Scenario:
    name: str
    n_clips: int
    champion_accuracy: float
    candidate_accuracy: float


SCENARIOS = (
    Scenario("equal models, n=120", 120, 0.75, 0.75),
    Scenario("equal models, n=290", 290, 0.75, 0.75),
    Scenario("candidate 3 points worse, n=120", 120, 0.75, 0.72),
    Scenario("candidate 3 points worse, n=290", 290, 0.75, 0.72),
    Scenario("candidate 10 points better, n=290", 290, 0.75, 0.85),
    Scenario("candidate 10 points better, n=120", 120, 0.75, 0.85),
)


def correlated_correctness(
    rng: np.random.Generator, n: int, accuracy: tuple[float, float], rho: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two aligned correctness vectors with the given accuracies and latent correlation."""
    shared = rng.standard_normal(n)
    out = []
    for acc in accuracy:
        own = math.sqrt(rho) * shared + math.sqrt(1.0 - rho) * rng.standard_normal(n)
        out.append(own < norm.ppf(acc))
    return out[0], out[1]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def promotion_rate(
    sc: Scenario,
    evaluations: int,
    samples: int,
    alpha: float,
    margin: float,
    rho: float,
    seed: int,
) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    promoted = 0
    for i in range(evaluations):
        cand, champ = correlated_correctness(
            rng, sc.n_clips, (sc.candidate_accuracy, sc.champion_accuracy), rho
        )
        evidence = paired_bootstrap(cand, champ, samples, seed * 1_000_003 + i, alpha)
        promoted += gate(evidence, margin, "champion").promote
    low, high = wilson(promoted, evaluations)
    return {
        "scenario": sc.name,
        "n_clips": sc.n_clips,
        "champion_accuracy": sc.champion_accuracy,
        "candidate_accuracy": sc.candidate_accuracy,
        "rho": rho,
        "evaluations": evaluations,
        "promoted": promoted,
        "rate": promoted / evaluations,
        "rate_ci95": [round(low, 4), round(high, 4)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--evaluations", type=int, default=2000, help="simulated evaluations each")
    ap.add_argument("--samples", type=int, default=1000, help="bootstrap resamples (params)")
    ap.add_argument("--alpha", type=float, default=0.05, help="evaluate.promotion_alpha")
    ap.add_argument("--margin", type=float, default=0.0, help="evaluate.promotion_margin")
    ap.add_argument(
        "--rho", type=float, nargs="+", default=[0.0, 0.5], help="error correlations to run"
    )
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--json", action="store_true", help="one JSON line per result")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    for rho in args.rho:
        for k, sc in enumerate(SCENARIOS):
            r = promotion_rate(
                sc,
                args.evaluations,
                args.samples,
                args.alpha,
                args.margin,
                rho,
                args.seed + k,
            )
            if args.json:
                print(json.dumps(r))
            else:
                low, high = r["rate_ci95"]
                print(
                    f"rho={rho:.1f}  {sc.name:<36} promoted {r['promoted']:>5}/{r['evaluations']}"
                    f" = {r['rate']:.3f}  (95% CI {low:.3f}-{high:.3f})",
                    flush=True,
                )
    print(
        f"# {time.perf_counter() - t0:.1f} s, alpha={args.alpha}, margin={args.margin}, "
        f"{args.samples} bootstrap resamples",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
