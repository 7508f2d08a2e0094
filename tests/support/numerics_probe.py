"""Run as ``python -m support.numerics_probe PINNED THREADS [DEVICE]`` (``tests`` on the path):
pins the numerics like a stage does, then prints JSON with the SHA-256 of what the pipeline
computes — log-mel features of a fixed waveform, and the weights of a small CNN and CNN-LSTM
after a few SGD steps — plus the fingerprint in force.

A separate process because the pins act only before torch first computes, and because they
would change every later test's numerics in the pytest process.
"""

from __future__ import annotations

import hashlib
import json
import sys


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(pinned: bool, threads: int, device: str = "cpu") -> dict:
    from genreflow.core.numerics import numeric_environment, pin_numerics

    pin_numerics(threads, pinned)  # before torch computes anything, as a stage does

    import torch

    from genreflow.core.config import FeatureParams, TrainParams
    from genreflow.features.frontend import LogMelFrontend
    from genreflow.models import build_classifier

    features = FeatureParams()
    wave = torch.randn(2, features.sample_rate * 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        segments = LogMelFrontend(features).to(device).segments(0.1 * wave.to(device))
    batch = segments.reshape(-1, *segments.shape[-2:])[:16].float()
    out = {"features": _digest(segments), "environment": numeric_environment()}
    recipes = {
        "cnn": TrainParams(channels=(4, 8, 8, 16, 16), dense=(32, 16, 16, 16)),
        "crnn": TrainParams(arch="crnn", batch_norm=True, channels=(4, 8, 8), dense=(16,)),
    }
    for arch, recipe in recipes.items():
        torch.manual_seed(0)
        model = build_classifier(recipe, batch.shape[-2], batch.shape[-1], 10).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        labels = torch.arange(batch.shape[0], device=device) % 10
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(batch), labels).backward()
            opt.step()
        out[arch] = _digest(*model.parameters())
    return out


if __name__ == "__main__":
    pinned_arg, threads_arg, *rest = sys.argv[1:]
    print(json.dumps(main(pinned_arg == "pinned", int(threads_arg), *rest)))
