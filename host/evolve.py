"""The evolution: ancestor -> generation after generation of offspring, each trained, measured, exported.

Resumable at epoch granularity: after every epoch the offspring in training is checkpointed atomically;
an offspring that finished is in the lineage with its weights; a generation is in the lineage once its
ONNX is exported. ``evolve(config)`` on a run folder that already has some of these continues from there.
"""
from __future__ import annotations

import copy
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from contract.files import atomic_write
from contract.preprocess import PreprocessSpec
from host import config as config_module
from host.config import EvolveConfig
from host.distributed import World, barrier, broadcast, init_world, local_device, shutdown
from host.latency import FpsMeter, local_fps, local_fps_against, parse_latency_source, wait_for_device_fps
from host.data import CachedImages, DataIdentity, cache_split, check_classes_decoded, normalize_batch, scan_folder
from host.errors import HostError
from host.export import export_generation, onnx_from_model
from host.genome import Genome
from host.layout import RunLayout
from host.lineage import Lineage
from host.model import SqueezeNet, load_pretrained
from host import run_folder
from host.report import refresh
from host.steering import fitness, next_step
from host.surgery import cluster_strengths, inherit
from host.synthesis import layer_scales, sample_offspring, solve_lambda
from host.train import (TrainSettings, derive_seed, evaluate, make_optimizer, pick_device, steps_per_epoch,
                        train_one_epoch)

log = logging.getLogger("squishednets.evolve")


@dataclass
class Dataset:
    train: CachedImages
    val: CachedImages
    labels: list[str]
    spec: PreprocessSpec
    unreadable_folders: list[tuple[str, str]]  # (folder, reason): class folders that could not be listed

    def skipped(self) -> dict[str, list[tuple[str, str]]]:
        """(path, reason) of every input left out, by where it was found (lineage.sqlite's skipped_files)."""
        return {"train": self.train.skipped, "val": self.val.skipped, "folders": self.unreadable_folders}


def atomic_torch_save(obj, path) -> None:
    """torch.save, whole or not at all (a checkpoint is a few MB: serialised in memory, then written)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def load_dataset(config: EvolveConfig, layout: RunLayout, world: World = World(), lineage: Lineage | None = None,
                 resume: bool = False) -> Dataset:
    """Scan and decode the data folder (refused by name when unusable); what was skipped is in the result.
    With ``lineage``: a new run records the data's identity, a resumed run refuses other data (before any
    decoding)."""
    split = scan_folder(config.data, config.val_fraction, config.seed)
    if lineage is not None:
        run_folder.check_data(lineage, DataIdentity.of(split), config.data, config.out, resume, record=world.is_main)
    spec = PreprocessSpec.square(config.image_size)
    cache = config.cache_dir or layout.cache
    if world.is_main:  # rank 0 decodes, the others wait and read its cache
        cache_split(split.train, spec, cache, "train")
        cache_split(split.val, spec, cache, "val")
    barrier(world)
    train = cache_split(split.train, spec, cache, "train")
    val = cache_split(split.val, spec, cache, "val")
    data = Dataset(train, val, split.labels, spec, split.unreadable)
    for name, part in (("train", train), ("val", val)):
        if len(part) == 0:
            example = f", e.g. {part.skipped[0][0]}: {part.skipped[0][1]}" if part.skipped else ""
            raise HostError(f"--data {config.data}: no decodable images in the {name} split ({len(part.skipped)} "
                            f"file(s) skipped{example}); give it readable JPEG/PNG images")
    check_classes_decoded(split, train)
    for name, skipped in data.skipped().items():
        if skipped and world.is_main:
            log.warning("skipped %d unreadable %s in %s, e.g. %s: %s (listed in lineage.sqlite, table "
                        "skipped_files)", len(skipped), "folder(s)" if name == "folders" else "file(s)",
                        "the class folders" if name == "folders" else f"the {name} split", *skipped[0])
    log.info("data %s: %d classes, %d train / %d val images (val: %s), %d skipped", config.data,
             len(split.classes), len(train), len(val), split.val_source,
             sum(len(skipped) for skipped in data.skipped().values()))
    return data


def load_ancestor(path, labels: list[str], dropout: float) -> SqueezeNet:
    """--ancestor-from: a host-evolve model file (genome + weights) for ``labels``, refused by name when it
    is not one, has another number of classes, or its generation's labels.txt names other classes."""
    path = Path(path)
    fix = "give a host-evolve model file, e.g. RUN/gen-00/offspring-0.pt of a run on the same classes"
    if not path.is_file():
        raise HostError(f"--ancestor-from {path}: no such file; {fix}")
    try:
        model = load_weights(path, "cpu", dropout)
    except Exception as error:  # torch, Genome and load_state_dict raise many types; all mean "not one of ours"
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise HostError(f"--ancestor-from {path} is not a host-evolve model file ({reason}); {fix}") from error
    if model.genome.num_classes != len(labels):
        raise HostError(f"--ancestor-from {path} classifies {model.genome.num_classes} classes, the data has "
                        f"{len(labels)}; {fix}")
    beside = path.parent / "labels.txt"
    if beside.is_file():
        theirs = [line.strip() for line in beside.read_text(encoding="utf-8").splitlines() if line.strip()]
        if theirs and theirs != list(labels):
            raise HostError(f"--ancestor-from {path}: its {beside} names other classes or another order "
                            f"({', '.join(theirs[:3])}, ...) than the data ({', '.join(labels[:3])}, ...); {fix}")
    return model


def parity_images(data: Dataset, count: int = 8) -> np.ndarray:
    images = torch.from_numpy(np.array(data.val.images[:count]))
    return normalize_batch(images, data.spec).contiguous().numpy()


def load_weights(path, device, dropout: float | None = None) -> SqueezeNet:
    """A host-evolve model file (genome, weights, dropout: plain tensors and numbers, so weights_only);
    ``dropout`` overrides the file's."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = SqueezeNet(Genome.from_dict(state["genome"]), dropout=state.get("dropout", 0.5) if dropout is None else dropout)
    model.load_state_dict(state["model"])
    return model.to(device)


class Evolution:
    def __init__(self, config: EvolveConfig, measure_fps: FpsMeter = local_fps, resume: bool = False):
        self.config = config
        self.measure_fps = measure_fps  # the local speed meter (--latency-from local, --fps-weight)
        self.layout = RunLayout(config.out)
        device = pick_device(config.device)
        self.world = init_world(device)
        self.device = local_device(device, self.world)
        if config.pretrained and not resume:  # a bad file is refused before anything is written
            load_pretrained(SqueezeNet(Genome.squeezenet1_1(2)), config.pretrained)
        # only rank 0 ever writes to the run folder, and only one host-evolve at a time (the claim's lock)
        self.claim = run_folder.claim(self.layout, config.to_dict(), resume) if self.world.is_main else None
        try:
            if self.world.is_main:
                if resume:  # a damaged lineage, checkpoint or weights file: one line naming it and what to do
                    run_folder.check_run_files(self.layout)
                Lineage(self.layout.lineage).close()
                config_module.save(config, self.layout.config)  # first: a run killed while decoding resumes
            barrier(self.world)
            self.lineage = Lineage(self.layout.lineage)
            if self.world.is_main:
                self.lineage.save_config(config.to_dict())
            self.data = load_dataset(config, self.layout, self.world, self.lineage, resume)
            if config.ancestor_from and not resume:  # refused before any training, the new run taken back
                load_ancestor(config.ancestor_from, self.data.labels, config.dropout)
            if self.world.is_main:
                for where, skipped in self.data.skipped().items():
                    self.lineage.add_skipped(skipped, where)
        except BaseException as error:
            if hasattr(self, "lineage"):
                self.lineage.close()
            if self.claim is not None:
                if isinstance(error, HostError):
                    self.claim.undo_setup()  # a refused new run takes back what it wrote; a resumed one keeps all
                self.claim.release()
            raise
        self.num_classes = len(self.data.labels)
        self.ancestor_weights: str | None = None  # gen-00's weights (relative to RUN), once it is recorded
        self._ancestor: SqueezeNet | None = None  # the ancestor as a teacher (--distill-from ancestor), loaded once

    def settings(self, epochs: int) -> TrainSettings:
        c = self.config
        return TrainSettings(epochs=epochs, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
                             label_smoothing=c.label_smoothing, distill_weight=c.distill_weight,
                             crop_scale=c.crop_scale)

    # -- one offspring ---------------------------------------------------------------------------
    def new_offspring(self, generation: int, index: int, parent: SqueezeNet | None,
                      env_factor: float, recovery: bool = False) -> tuple[SqueezeNet, float | None]:
        c = self.config
        if recovery:  # the recovery fine-tune: the parent itself, every filter kept (no heredity, no lambda)
            return copy.deepcopy(parent).cpu(), None
        if parent is None and c.ancestor_from:
            return load_ancestor(c.ancestor_from, self.data.labels, c.dropout), None
        if parent is None:
            model = SqueezeNet(Genome.squeezenet1_1(self.num_classes), dropout=c.dropout)
            torch.manual_seed(derive_seed(c.seed, 0, index, 999))
            model.reset_parameters()
            if c.pretrained:
                load_pretrained(model, c.pretrained)
            return model, None
        strengths = cluster_strengths(parent)
        scales = layer_scales(strengths, self.num_classes, c.image_size, c.cost_exponent)
        lam = solve_lambda(strengths, self.num_classes, env_factor, kind=c.budget, image_size=c.image_size,
                           min_filters=c.min_filters, round_to=c.round_to, scales=scales)
        rng = np.random.default_rng(derive_seed(c.seed, generation, index, 12345))
        kept = sample_offspring(strengths, lam, rng, min_filters=c.min_filters, round_to=c.round_to, scales=scales)
        return inherit(parent.cpu(), kept), lam

    def teacher(self, parent: SqueezeNet | None) -> SqueezeNet | None:
        """The model an offspring distils from: none for the ancestor or without --distill-weight, else the
        parent or (--distill-from ancestor) generation 0, the strongest model of the run."""
        c = self.config
        if parent is None or c.distill_weight <= 0:
            return None
        if c.distill_from == "parent":
            return parent
        if self._ancestor is None:
            self._ancestor = load_weights(self.layout.root / self.ancestor_weights, "cpu").eval()
        return self._ancestor

    def breed(self, generation: int, index: int, parent: SqueezeNet | None, env_factor: float,
              recovery: bool = False) -> dict:
        """Train one offspring to the end (resuming from the checkpoint if it is this one's) and record it.
        ``recovery``: the final fine-tune of ``parent`` itself for --final-epochs (the learning rate rewound
        to its peak and decayed again, as every offspring's is: Renda et al. 2020's LR rewinding)."""
        c, layout = self.config, self.layout
        epochs = c.ancestor_epochs if parent is None else (c.final_epochs if recovery else c.epochs)
        settings = self.settings(epochs)
        checkpoint = None
        barrier(self.world)  # every rank sees the same checkpoint
        if layout.checkpoint.is_file():
            checkpoint = torch.load(layout.checkpoint, map_location="cpu", weights_only=False)
            if (checkpoint["generation"], checkpoint["offspring"]) != (generation, index):
                checkpoint = None  # a leftover of a finished offspring
        if checkpoint is not None:
            model = SqueezeNet(Genome.from_dict(checkpoint["genome"]), dropout=c.dropout)
            model.load_state_dict(checkpoint["model"])
            lam, first_epoch, train_seconds = checkpoint["lambda"], checkpoint["epochs_done"], checkpoint["train_seconds"]
            history = checkpoint["history"]
            for epoch, stats in enumerate(history):
                if self.world.is_main:
                    self.lineage.add_epoch(generation, index, epoch, stats)
            log.info("resuming generation %d offspring %d after epoch %d", generation, index, first_epoch)
        else:
            model, lam = self.new_offspring(generation, index, parent, env_factor, recovery)
            first_epoch, train_seconds, history = 0, 0.0, []
        model = model.to(self.device).to(memory_format=torch.channels_last)
        teacher = self.teacher(parent)
        if teacher is not None:
            teacher = teacher.to(self.device).to(memory_format=torch.channels_last)
        optimizer, scheduler = make_optimizer(model, settings, max(1, epochs) * steps_per_epoch(
            len(self.data.train), settings.batch_size))
        if checkpoint is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
        for epoch in range(first_epoch, epochs):
            stats = train_one_epoch(model, self.data.train, self.data.spec, optimizer, scheduler, settings,
                                    derive_seed(c.seed, generation, index, epoch), self.device, teacher,
                                    desc=f"gen {generation:02d}.{index} epoch {epoch + 1}/{epochs}", world=self.world)
            train_seconds += stats["seconds"]
            history.append(stats)
            if not self.world.is_main:
                continue
            # the checkpoint first, then the lineage row: a kill between the two loses no epoch (the row is
            # written again from the checkpoint's history on resume), a kill before both redoes this epoch
            atomic_torch_save({"generation": generation, "offspring": index, "epochs_done": epoch + 1,
                               "genome": model.genome.to_dict(), "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "lambda": lam, "train_seconds": train_seconds, "history": history},
                              layout.checkpoint)
            self.lineage.add_epoch(generation, index, epoch, stats)
            tqdm.write(f"  gen {generation:02d}.{index} epoch {epoch + 1}/{epochs}: loss {stats['loss']:.3f}, "
                       f"train top-1 {100 * stats['train_top1']:.1f} %, {stats['images_per_second']:.0f} img/s")
        scores = evaluate(model, self.data.val, self.data.spec, self.device)
        weights = layout.offspring_weights(generation, index)
        if self.world.is_main:
            weights.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({"genome": model.genome.to_dict(), "model": model.state_dict(), "dropout": c.dropout},
                              weights)
        genome = model.genome
        row = {"generation": generation, "offspring": index, "parent": None if parent is None else generation - 1,
               "genome": genome.to_json(), "params": genome.params, "size_bytes": genome.size_bytes,
               "macs": genome.macs(c.image_size), "top1": scores["top1"], "top5": scores["top5"],
               "train_seconds": train_seconds, "lambda": lam, "weights": layout.relative(weights)}
        if c.fps_weight > 0 and parent is not None:  # measured once, on rank 0; every rank must pick the same
            row["local_fps"] = broadcast(self.world, self.offspring_fps(model) if self.world.is_main else None)
        if self.world.is_main:
            self.lineage.add_offspring(row)
        barrier(self.world)
        return row

    def offspring_fps(self, model: SqueezeNet) -> float:
        """Local ONNX Runtime speed of an offspring that is not exported yet (fitness with --fps-weight)."""
        path = self.layout.root / "offspring-speed.onnx"
        path.write_bytes(onnx_from_model(model, self.data.spec).SerializeToString())
        try:
            return self.measure_fps(path, self.config.latency_seconds)
        finally:
            path.unlink(missing_ok=True)

    # -- one generation --------------------------------------------------------------------------
    def breed_generation(self, generation: int, parent: SqueezeNet | None, env_factor: float,
                         recovery: bool = False) -> list[dict]:
        """Heredity, synthesis, training and evaluation of the generation's offspring (one for the ancestor
        and the recovery fine-tune, K otherwise); offspring already in the lineage (a resumed run) are not
        bred again."""
        done = {row["offspring"]: row for row in self.lineage.offspring(generation)}
        for index in range(1 if parent is None or recovery else self.config.offspring):
            if index not in done:
                done[index] = self.breed(generation, index, parent, env_factor, recovery)
        return [done[index] for index in sorted(done)]

    def export_and_record(self, generation: int, best: dict, parent: SqueezeNet | None, env_factor: float,
                          recovery: bool = False) -> dict:
        """Export the fittest offspring as the generation's ONNX (rank 0) and record it in the lineage."""
        c = self.config
        if not self.world.is_main:
            barrier(self.world)  # rank 0 exports and records; the others only need the weights, already written
            return dict(best)
        model = load_weights(self.layout.root / best["weights"], "cpu")
        folder = self.layout.generation_dir(generation)
        card = export_generation(model, folder, spec=self.data.spec, labels=self.data.labels, generation=generation,
                                 parity_images=parity_images(self.data), fp16=c.fp16_onnx,
                                 extra_card={"top1": best["top1"], "top5": best["top5"], "parent": best["parent"],
                                             "env_factor": None if parent is None else env_factor,
                                             **({"recovery_of": generation - 1} if recovery else {})})
        row = dict(best, env_factor=None if parent is None else env_factor, onnx=self.layout.relative(folder / "model.onnx"),
                   sha256=card["sha256"], labels=self.layout.relative(folder / "labels.txt"),
                   card=self.layout.relative(folder / "card.json"))
        self.lineage.add_generation(row)
        self.layout.checkpoint.unlink(missing_ok=True)
        tqdm.write(describe(row))
        barrier(self.world)
        return row

    def fps_for_steering(self, row: dict) -> float:
        """The generation's fps from the configured source, measured once and kept in the lineage."""
        fps = None
        if self.world.is_main:
            stored = self.lineage.generation(row["generation"])
            fps = stored.get("steering_fps") if stored else None
            if fps is None:
                kind, device_id = parse_latency_source(self.config.latency_from)
                if kind == "local" and row["generation"] == 0:
                    fps = sorted(self.measure_fps(self.layout.root / row["onnx"], self.config.latency_seconds)
                                 for _ in range(3))[1]  # the reference: a median of three
                elif kind == "local":
                    ancestor = self.lineage.generation(0)
                    fps = local_fps_against(self.layout.root / ancestor["onnx"], ancestor["steering_fps"],
                                            self.layout.root / row["onnx"], self.config.latency_seconds,
                                            measure=self.measure_fps)
                else:
                    tqdm.write(f"  waiting for device {device_id} to report generation {row['generation']} ...")
                    fps = wait_for_device_fps(self.lineage, device_id, row["sha256"], self.config.latency_timeout)
                self.lineage.set_steering_fps(row["generation"], fps, self.config.latency_from)
        return broadcast(self.world, fps)

    # -- the evolution ---------------------------------------------------------------------------
    def run(self) -> dict:
        """The paper's loop: the ancestor, then generation after generation: heredity from the parent, offspring
        synthesized, trained and evaluated, the fittest exported and recorded, then the rules (host/steering.py)
        choose the next R or stop, and the generation is selected as the next parent."""
        c = self.config
        finished = {row["generation"]: row for row in self.lineage.generations()}  # a resumed run's
        bar = tqdm(range(c.generations + 1), desc="evolution", unit="gen", dynamic_ncols=True,
                   disable=not self.world.is_main)
        parent, env_factor, stop_reason = None, c.env_factor, None  # generation 0 is the ancestor: no parent
        for generation in bar:
            if generation in finished:
                row = finished[generation]
            else:
                offspring = self.breed_generation(generation, parent, env_factor)
                best = max(offspring, key=lambda o: fitness(o, c.fps_weight, c.target_fps))
                row = self.export_and_record(generation, best, parent, env_factor)
            if generation == 0:
                self.ancestor_weights = row["weights"]
            fps = self.fps_for_steering(row) if c.target_fps > 0 else None
            env_factor, stop_reason = next_step(c, generation, row, fps, env_factor)
            if self.world.is_main:
                if fps is not None:
                    tqdm.write(f"  measured {fps:.0f} fps ({c.latency_from}), target {c.target_fps:.0f}: "
                               + ("met" if fps >= c.target_fps else f"next R = {env_factor:.3f}"))
                if generation not in finished:
                    refresh(self.layout, self.lineage, self.data.spec.to_dict(), self.data.labels)
            if stop_reason:
                break
            parent = load_weights(self.layout.root / row["weights"], "cpu")  # selection: the next parent
        bar.close()
        if c.final_epochs > 0 and row["generation"] > 0:
            row = self.recover(row, finished)
        if not self.world.is_main:
            return {}
        summary = refresh(self.layout, self.lineage, self.data.spec.to_dict(), self.data.labels, stop_reason)
        if stop_reason:
            tqdm.write(f"stopped: {stop_reason}")
        # the checkpoint of a finished run is gone; the decoded-image cache is kept for reruns
        return summary


    def recover(self, last: dict, finished: dict) -> dict:
        """The recovery fine-tune (--final-epochs): the last generation trained on, every filter kept,
        recorded as one more generation (same genome, env_factor 1, no lambda; its card says
        ``recovery_of``), so its ONNX, report point and device figures come as every generation's do."""
        generation = last["generation"] + 1
        if generation in finished:  # a resumed run that had finished it
            return finished[generation]
        parent = load_weights(self.layout.root / last["weights"], "cpu")
        tqdm.write(f"recovery fine-tune of generation {last['generation']} for {self.config.final_epochs} epochs")
        (best,) = self.breed_generation(generation, parent, 1.0, recovery=True)
        return self.export_and_record(generation, best, parent, 1.0, recovery=True)  # run() refreshes the report


def describe(row: dict) -> str:
    return (f"gen {row['generation']:02d}: {row['params']:,} params ({row['size_bytes'] / 1e6:.3f} MB), "
            f"{row['macs'] / 1e6:.1f} M MACs, top-1 {100 * row['top1']:.1f} %, top-5 {100 * row['top5']:.1f} %, "
            f"trained {row['train_seconds']:.0f} s -> {row['onnx']}")


def evolve(config: EvolveConfig, measure_fps: FpsMeter = local_fps, resume: bool = False) -> dict:
    """Run the evolution ``config`` describes in a new (or empty) folder, or with ``resume`` continue the run
    there; ``measure_fps`` is the local speed meter."""
    start = time.time()
    evolution = Evolution(config, measure_fps, resume)
    try:
        summary = evolution.run()
    finally:
        evolution.lineage.close()
        if evolution.claim is not None:
            evolution.claim.release()
        shutdown(evolution.world)
    log.info("run %s finished in %.0f s", config.out, time.time() - start)
    return summary
