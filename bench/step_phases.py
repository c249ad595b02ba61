"""Where a training step's time goes: the phases of host/evolve/train.py's step, timed one by one, on real images.

    python bench/step_phases.py                 # Imagenette, 640 images at 112 px, SqueezeNet v1.1 (10 classes)

Per batch of 64, serially (no prefetch thread, so each phase has the cores to itself): gather from the
uint8 cache, normalise, augment (random resized crop + flip, one grid_sample), channels-last copy, forward,
loss, backward, optimizer step. Then the real step (host/evolve/train.py's train_one_epoch) against pure compute
(forward + backward + step on a batch in memory), alternately for --rounds rounds, the real step both
ways: the batch made on the prefetch thread (host.evolve.train.PREFETCH_DEPTH = 2) and made serially before each
step (depth 0; host/evolve/train.py's default on 2-core machines since this bench). The gap between the two real steps is what the batch thread takes from the cores the
compute would use; the medians of the per-round ratios are printed (this machine's drift cancels).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
SHARED = PROJECT.parent / "shared"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternations of pure / threaded / serial (default 3)")
    parser.add_argument("--images", type=int, default=640, help="images per measured epoch, 64 a batch (default 640)")
    args = parser.parse_args(argv)
    import torch
    import host.evolve.train as train_module
    import torch.nn.functional as F
    from contract.preprocess import PreprocessSpec
    from host.evolve.data import CachedImages, augment_batch, cache_split, normalize_batch, scan_folder
    from host.evolve.genome import Genome
    from host.evolve.model import SqueezeNet, load_pretrained
    from host.evolve.train import TrainSettings, compute_throughput, make_optimizer, train_one_epoch
    size, batch, images = 112, 64, args.images
    spec = PreprocessSpec.square(size)
    split = scan_folder(SHARED / "datasets" / "imagenette", 0.1, 0)
    with tempfile.TemporaryDirectory() as cache:
        data = cache_split(split.train[::len(split.train) // images][:images], spec, cache, "train")
        data = CachedImages(np.array(data.images), data.labels, data.paths, [])
    model = SqueezeNet(Genome.squeezenet1_1(10)).to(memory_format=torch.channels_last)
    load_pretrained(model, SHARED / "weights" / "squeezenet1_1_imagenet.pth")
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    phases = {k: 0.0 for k in ("gather", "normalise", "augment", "channels_last", "forward", "loss", "backward",
                               "step")}
    steps = images // batch
    for repeat in range(2):  # the first pass warms up; the second is timed
        for s in range(steps):
            mark = time.perf_counter()
            times = []
            index = np.arange(s * batch, (s + 1) * batch)
            x = torch.from_numpy(np.asarray(data.images[index]))
            y = torch.from_numpy(data.labels[index])
            times.append(time.perf_counter())
            x = normalize_batch(x, spec)
            times.append(time.perf_counter())
            x = augment_batch(x, generator, scale=(0.5, 1.0))
            times.append(time.perf_counter())
            x = x.contiguous(memory_format=torch.channels_last)
            times.append(time.perf_counter())
            logits = model(x)
            times.append(time.perf_counter())
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            times.append(time.perf_counter())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            times.append(time.perf_counter())
            optimizer.step()
            times.append(time.perf_counter())
            if repeat:
                for name, before, after in zip(phases, [mark] + times[:-1], times):
                    phases[name] += after - before
    total = sum(phases.values())
    print(f"per batch of {batch} at {size} px, phases run one after another ({steps} batches, torch threads "
          f"{torch.get_num_threads()}):")
    for name, seconds in phases.items():
        print(f"  {name:14s} {1000 * seconds / steps:7.1f} ms  {100 * seconds / total:5.1f} %")
    cpu = torch.device("cpu")
    speeds, default_depth = {"pure": [], "prefetch 2": [], "serial": []}, train_module.PREFETCH_DEPTH
    for _ in range(args.rounds):
        speeds["pure"].append(compute_throughput(model, batch, size, cpu, steps=steps))
        for name, depth in (("prefetch 2", 2), ("serial", 0)):
            train_module.PREFETCH_DEPTH = depth
            settings = TrainSettings(epochs=1, batch_size=batch, lr=1e-4, crop_scale=0.5)
            opt, sched = make_optimizer(model, settings, steps)
            speeds[name].append(train_one_epoch(model, data, spec, opt, sched, settings, 0, cpu)["images_per_second"])
    train_module.PREFETCH_DEPTH = default_depth
    for name, values in speeds.items():
        ratio = np.median(np.array(values) / np.array(speeds["pure"]))
        print(f"{name:11s} median {np.median(values):6.0f} img/s, against pure compute {ratio:.3f} "
              f"(rounds: {', '.join(f'{v:.0f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
