"""Is one model's top-1 lead over another real? McNemar's exact test on the same held-out images.

    python bench/paired.py A.pt B.pt [--data ../shared/datasets/imagenette] [--image-size 112]

A and B are model files (host-evolve's RUN/gen-XX/offspring-K.pt, bench/peers.py's step files) for the same
classes; both are scored on the split host-evolve and bench/peers.py use (host.evolve.data.scan_folder, 10 % of every
class, seed 0). Prints both top-1s, the images only A got right (b) and only B got right (c), and the two-sided
exact p-value of McNemar's test, 2 x P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2) (McNemar 1947; the exact
form, Edwards 1948 / Fagerland et al. 2013, BMC Med Res Methodol 13:91). A small p says the lead is more than the
luck of which images the split holds; it says nothing of another seed's training.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
SHARED = PROJECT.parent / "shared"


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def correct(model, data) -> "np.ndarray":
    import torch
    from host.evolve.train import predict
    logits = predict(model, data.val, data.spec, torch.device("cpu"))
    return (logits.argmax(1).numpy() == data.val.labels)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--data", default=str(SHARED / "datasets" / "imagenette"))
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--cache", default=str(PROJECT / "runs" / "paired-cache"))
    args = parser.parse_args(argv)
    from bench.peers import Data, load_model
    data = Data(args.data, args.image_size, Path(args.cache))
    models = [load_model(Path(p))[0] for p in (args.a, args.b)]
    if models[0].genome.num_classes != len(data.labels) or models[1].genome.num_classes != len(data.labels):
        print(f"{args.a} / {args.b}: a model's classes are not the {len(data.labels)} of {args.data}", file=sys.stderr)
        return 2
    hits = [correct(m, data) for m in models]
    only_a, only_b = int((hits[0] & ~hits[1]).sum()), int((~hits[0] & hits[1]).sum())
    result = {"a": args.a, "b": args.b, "images": int(len(hits[0])), "top1_a": float(hits[0].mean()),
              "top1_b": float(hits[1].mean()), "only_a": only_a, "only_b": only_b,
              "p_mcnemar_exact": mcnemar_exact(only_a, only_b)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
