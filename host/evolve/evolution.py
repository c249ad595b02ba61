"""The evolution: ancestor -> generation after generation of offspring, each trained, measured, exported.

Resumable at epoch granularity: after every epoch the offspring in training is checkpointed atomically;
an offspring that finished is in the lineage with its weights; a generation is in the lineage once its
ONNX is exported. ``evolve(config)`` on a run folder that already has some of these continues from there.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from contract.generation_files import CARD_JSON, LABELS_TXT, MODEL_ONNX
from contract.preprocess import PreprocessSpec
from host.evolve import config as config_module
from host.evolve import run_folder
from host.evolve.checkpoints import TrainingState, load_ancestor, load_checkpoint, load_weights, read_training_state
from host.evolve.config import EvolveConfig
from host.evolve.data import CachedImages, DataIdentity, cache_split, check_classes_decoded, normalize_batch, scan_folder
from host.evolve.distributed import World, barrier, broadcast, init_world, local_device, shutdown, sum_across
from host.errors import HostError
from host.evolve.export import export_generation, onnx_from_model
from host.evolve.genome import Genome
from host.evolve.progress import bars_disabled
from host.evolve.latency import FpsMeter, local_fps, steering_fps
from host.run.layout import RunLayout
from host.run.lineage import Lineage
from host.evolve.model import SqueezeNet, load_pretrained
from host.evolve.offspring import train_offspring
from host.evolve.recorder import Recorder
from host.evolve.selection import FORWARD_SHARE, ProxySet, fidelity, logits_on, strongest_offspring
from host.evolve.steering import collapse_reason, fitness, milder_env_factor, next_step
from host.run.acceptance import chance_share, small_split_warning, top1_text
from host.evolve.surgery import cluster_strengths, inherit
from host.evolve.synthesis import layer_scales, sample_offspring, solve_lambda
from host.evolve.train import TrainSettings, derive_seed, effective_batch, effective_lr, evaluate, pick_device


log = logging.getLogger("squishednets.evolve")


@dataclass
class Dataset:
    train: CachedImages
    val: CachedImages
    labels: list[str]
    spec: PreprocessSpec
    unreadable_folders: list[tuple[str, str]]  # (folder, reason): class folders that could not be listed
    not_used: list[tuple[str, str]] = field(default_factory=list)  # (file, reason): files under --data left out

    def skipped(self) -> dict[str, list[tuple[str, str]]]:
        """(path, reason) of every input left out, by where it was found (lineage.sqlite's skipped_files)."""
        return {"train": self.train.skipped, "val": self.val.skipped, "folders": self.unreadable_folders,
                "not used": self.not_used}


def skipped_by_reason(skipped: dict[str, list[tuple[str, str]]]) -> str:
    """"3 not decodable, 2 not an image file": every left-out input counted by the first words of its reason."""
    counts: dict[str, int] = {}
    for entries in skipped.values():
        for _, reason in entries:
            key = reason.split(" (", 1)[0].split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{count} {key}" for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def load_dataset(config: EvolveConfig, layout: RunLayout, world: World = World(), lineage: Lineage | None = None,
                 resume: bool = False) -> Dataset:
    """Scan and decode the data folder (refused by name when unusable); what was skipped is in the result.
    With ``lineage``: a new run records the data's identity, a resumed run refuses other data (before any
    decoding)."""
    saved = lineage.dataset() if (lineage is not None and resume) else None
    order = json.loads(saved["classes"]) if saved else None  # a resumed run keeps its class indices
    split = scan_folder(config.data, config.val_fraction, config.seed, order=order)
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
    data = Dataset(train, val, split.labels, spec, split.unreadable, split.not_used)
    for name, part in (("train", train), ("val", val)):
        if len(part) == 0:
            example = f", e.g. {part.skipped[0][0]}: {part.skipped[0][1]}" if part.skipped else ""
            raise HostError(f"--data {config.data}: no decodable images in the {name} split ({len(part.skipped)} "
                            f"file(s) skipped{example}); give it readable JPEG/PNG images")
    check_classes_decoded(split, train)
    for name, skipped in data.skipped().items():
        if skipped and world.is_main and name == "not used":
            log.warning("%d file(s) under %s not used, e.g. %s: %s (all in lineage.sqlite, table skipped_files)",
                        len(skipped), config.data, *skipped[0])
        elif skipped and world.is_main:
            log.warning("skipped %d unreadable %s in %s, e.g. %s: %s (listed in lineage.sqlite, table "
                        "skipped_files)", len(skipped), "folder(s)" if name == "folders" else "file(s)",
                        "the class folders" if name == "folders" else f"the {name} split", *skipped[0])
    skipped = data.skipped()
    total = sum(len(entries) for entries in skipped.values())
    log.info("data %s: %d classes, %d train / %d val images (val: %s), %d skipped%s", config.data,
             len(split.classes), len(train), len(val), split.val_source, total,
             f" ({skipped_by_reason(skipped)}; lineage.sqlite, table skipped_files)" if total else "")
    if world.is_main:
        for note in split.notes:
            log.warning("%s", note)
        pairs = [f"{folder} -> {label}" for folder, label in zip(split.classes, split.labels)]
        log.info("classes (folder -> label, in output order): %s%s", ", ".join(pairs[:6]),
                 f", ... ({len(pairs)} in all)" if len(pairs) > 6 else "")
    return data


def parity_images(data: Dataset, count: int = 8) -> np.ndarray:
    """The first ``count`` validation images, preprocessed as the device will (float32, N x 3 x H x W, normalised):
    the inputs whose PyTorch outputs each generation's ONNX must reproduce (host/evolve/export.py parity check)."""
    images = torch.from_numpy(np.array(data.val.images[:count]))
    return normalize_batch(images, data.spec).contiguous().numpy()


def train_settings(c: EvolveConfig, train_images: int, epochs: int) -> TrainSettings:
    """The training recipe of one offspring of a run with config ``c``: the batch made smaller for a small training
    split of ``train_images``, the peak rate scaled with it from ``--lr`` (given for batch 64; host/evolve/train.py:
    effective_batch, effective_lr)."""
    batch = effective_batch(train_images, c.batch_size)
    return TrainSettings(epochs=epochs, batch_size=batch, lr=effective_lr(c.lr, batch),
                         weight_decay=c.weight_decay, label_smoothing=c.label_smoothing,
                         distill_weight=c.distill_weight, crop_scale=c.crop_scale)


class Evolution:
    """One run of the evolution (run() reads top to bottom): the run folder, its lineage and data, and the steps
    of a generation (breed, breed_generation, export_and_record, recover)."""

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
            self.recorder = Recorder(self.lineage, self.world.is_main)
            self.recorder.config(config.to_dict())
            self.data = load_dataset(config, self.layout, self.world, self.lineage, resume)
            if config.ancestor_from and not resume:  # refused before any training, the new run taken back
                load_ancestor(config.ancestor_from, self.data.labels, config.dropout)
            for where, skipped in self.data.skipped().items():
                self.recorder.skipped(skipped, where)
            self.num_classes = len(self.data.labels)
            self._proxy: ProxySet | None = None  # selection's fixed proxy images (--candidates > 1), drawn once
            self.latency_cost = self.open_latency_cost() if config.budget == "latency" else None
        except BaseException as error:
            if hasattr(self, "lineage"):
                self.lineage.close()
            if self.claim is not None:
                if isinstance(error, HostError):
                    self.claim.undo_setup()  # a refused new run takes back what it wrote; a resumed one keeps all
                self.claim.release()
            raise
        self.ancestor_weights: str | None = None  # gen-00's weights (relative to RUN), once it is recorded
        self._ancestor: SqueezeNet | None = None  # the ancestor as a teacher (--distill-from ancestor), loaded once
        self._ancestor_top1: float | None = None  # gen 0's top-1, the reference of --max-total-drop

    def open_latency_cost(self):
        """--budget latency: the table (a file, or measured here and cached), checked against this run's input
        size, classes and widths; kept in the run folder. HostError when --round-to is off the table's block."""
        from host.evolve.latency_cost import device_of, local_block, resolve_table
        c = self.config
        parent = Genome.squeezenet1_1(self.num_classes).to_dict()
        device_id = device_of(c.latency_table)
        if device_id is not None:  # asked now, read when the first offspring needs it (after the ancestor)
            self._table_request = (device_id, self.lineage.request_latency_table(device_id, c.image_size, c.round_to,
                                                                                 parent))
            self.recorder.say(f"host-evolve: asked device {device_id} for its latency table (request "
                              f"{self._table_request[1]}); it is read before generation 1")
            return None
        log = self.recorder.say if self.world.is_main else (lambda message: None)
        if c.latency_table == "local":  # the block known before anything is measured
            check_block(c.round_to, *local_block())
        cost = resolve_table(c.latency_table, parent, c.image_size, c.round_to, log=log)  # a file: read once, here
        check_block(c.round_to, int(cost.table["block"]), cost.table.get("block_why", "the table's block"))
        return self.keep_table(cost)

    def keep_table(self, cost):
        """The table the run is priced by, kept as RUN/latency-table.json and said; ``cost`` back."""
        from host.evolve.latency_cost import save_copy
        if self.world.is_main:
            save_copy(cost, self.layout.latency_table)
            self.recorder.say("host-evolve: " + cost.describe())
        return cost

    def priced(self):
        """The LatencyCost --budget latency prices by: a device's table is waited for here, the first time."""
        if self.latency_cost is None and getattr(self, "_table_request", None):
            from host.evolve.latency_cost import LatencyCost, covers_or_refuse, wait_for_device_table
            device_id, request_id = self._table_request
            table = wait_for_device_table(self.lineage, request_id, device_id, self.config.latency_timeout,
                                          log=self.recorder.say)
            check_block(self.config.round_to, int(table["block"]), table.get("block_why", "the table's block"))
            cost = LatencyCost(table, f"device:{device_id}")
            covers_or_refuse(cost, Genome.squeezenet1_1(self.num_classes).to_dict(), self.config.image_size,
                             self.recorder.say)
            self.latency_cost = self.keep_table(cost)
        return self.latency_cost

    def budget_cost(self, genome: Genome) -> float:
        """What --budget counts of ``genome``: parameters, MACs at the run's size, or predicted latency (ms)."""
        c = self.config
        if c.budget == "latency":
            return self.priced().of_genome(genome)
        return genome.params if c.budget == "params" else genome.macs(c.image_size)

    def allocation(self, generation: int, parent: SqueezeNet, strengths: dict) -> tuple[dict, float]:
        """--budget latency: the per-layer factors of lambda (host/evolve/latency_cost.allocation_scales) from
        each layer's latency price at the parent's widths and its sensitivity (KL of the parent against the
        parent with only that layer cut by a quarter, on the proxy images); and the training-image equivalents
        the probes spent (one forward pass of the proxy images per layer, and the parent's)."""
        from host.evolve.latency_cost import allocation_scales, probe_cut
        c = self.config
        widths = {name: float(len(s)) for name, s in strengths.items()}
        prices = self.priced().prices(widths)
        if c.allocation_exponent == 0:
            return allocation_scales(prices, {}, 0.0), 0.0
        if self._proxy is None:
            self._proxy = ProxySet.draw(self.data.train, c.proxy_images, derive_seed(c.seed, 777))
        indices, device = self._proxy.score, self.device
        parent_logits = logits_on(copy.deepcopy(parent).to(device), self.data.train, indices, self.data.spec, device)
        everything = {name: np.arange(len(s)) for name, s in strengths.items()}
        sensitivities = {}
        for name, layer_strengths in strengths.items():
            kept = probe_cut(layer_strengths, c.round_to, c.min_filters)
            removed = len(layer_strengths) - len(kept)
            if removed <= 0:
                continue
            probe = inherit(parent.cpu(), dict(everything, **{name: kept}))
            kl = fidelity(logits_on(probe.to(device), self.data.train, indices, self.data.spec, device), parent_logits)
            sensitivities[name] = max(kl, 1e-6) / removed if math.isfinite(kl) else math.inf
        scales = allocation_scales(prices, sensitivities, c.allocation_exponent)
        spent = (len(sensitivities) + 1) * len(indices) * FORWARD_SHARE
        cut_most = sorted(scales, key=scales.get)[:3]
        self.recorder.say(f"  gen {generation:02d}: allocation by latency price / sensitivity: cut most in "
                          + ", ".join(f"{name} (x{scales[name]:.2f})" for name in cut_most))
        return scales, spent

    def settings(self, epochs: int) -> TrainSettings:
        """The training recipe of one offspring of ``epochs`` epochs (train_settings: batch and rate scaled to the
                split's size)."""
        return train_settings(self.config, len(self.data.train), epochs)

    # -- one offspring ---------------------------------------------------------------------------
    def new_offspring(self, generation: int, index: int, parent: SqueezeNet | None,
                      env_factor: float, recovery: bool = False) -> tuple[SqueezeNet, float | None, dict]:
        """The untrained offspring, its lambda, and what choosing it cost ({} but for selection: the
        candidates drawn, the proxy's score and the training-image equivalents it spent)."""
        c = self.config
        if recovery:  # the recovery fine-tune: the parent itself, every filter kept (no heredity, no lambda)
            return copy.deepcopy(parent).cpu(), None, {}
        if parent is None and c.ancestor_from:
            return load_ancestor(c.ancestor_from, self.data.labels, c.dropout), None, {}
        if parent is None:
            model = SqueezeNet(Genome.squeezenet1_1(self.num_classes), dropout=c.dropout)
            torch.manual_seed(derive_seed(c.seed, 0, index, 999))
            model.reset_parameters()
            if c.pretrained:
                load_pretrained(model, c.pretrained)
            return model, None, {}
        strengths = cluster_strengths(parent, c.strength)
        allocation_spent, cost_of = 0.0, None
        if c.budget == "latency":
            scales, allocation_spent = self.allocation(generation, parent, strengths)
            cost_of = self.priced().of_widths
        else:
            scales = layer_scales(strengths, self.num_classes, c.image_size, c.cost_exponent)
        lam = solve_lambda(strengths, self.num_classes, env_factor, kind=c.budget, image_size=c.image_size,
                           min_filters=c.min_filters, round_to=c.round_to, scales=scales, cost_of=cost_of)
        draws = []
        for candidate in range(c.candidates):  # candidate 0 is the draw a run without selection makes
            seed = derive_seed(c.seed, generation, index, 12345) if candidate == 0 else \
                derive_seed(c.seed, generation, index, 12345, candidate)
            draws.append(sample_offspring(strengths, lam, np.random.default_rng(seed), min_filters=c.min_filters,
                                          round_to=c.round_to, scales=scales))
        if len(draws) == 1:
            child = inherit(parent.cpu(), draws[0])
            if cost_of is not None:
                self.say_predicted(generation, parent, child)
            return child, lam, ({"proxy_images": allocation_spent} if allocation_spent else {})
        # and the heredity model's most likely offspring, drawn without chance (each layer its expected count of
        # its strongest filters): a per-layer allocation the draws vary around
        draws.append(strongest_offspring(strengths, lam, min_filters=c.min_filters, round_to=c.round_to,
                                         scales=scales))
        chosen, choice = self.select(generation, parent, draws, env_factor)
        if allocation_spent:
            choice["proxy_images"] = choice.get("proxy_images", 0.0) + allocation_spent
        if cost_of is not None:
            self.say_predicted(generation, parent, chosen)
        return chosen, lam, choice

    def say_predicted(self, generation: int, parent: SqueezeNet, child: SqueezeNet) -> None:
        before, after = self.priced().of_genome(parent.genome), self.priced().of_genome(child.genome)
        self.recorder.say(f"  gen {generation:02d}: predicted batch-1 latency {after:.3f} ms ({after / before:.2f} of "
                          f"the parent's {before:.3f} ms)")

    def select(self, generation: int, parent: SqueezeNet, draws: list[dict], env_factor: float) -> tuple[SqueezeNet, dict]:
        """Selection among ``draws`` (host/evolve/selection.py; the last is the most likely offspring, the others are
        random draws). Only draws within the environment's budget compete (cost <= R x the parent's, in what
        --budget counts; if none is, the cheapest), so selection cannot buy fidelity with size. Each inherits the
        parent's kept weights and is scored by its fidelity to the parent on the run's fixed proxy images,
        KL(parent || candidate); the most faithful is trained. Costs (candidates + 1) forward passes of the
        proxy images, on the training device and shared among torchrun's ranks."""
        c = self.config

        cost = self.budget_cost

        candidates = [inherit(parent.cpu(), draw) for draw in draws]
        budget = env_factor * cost(parent.genome)
        eligible = [m for m in candidates if cost(m.genome) <= budget] or [min(candidates, key=lambda m: cost(m.genome))]
        if self._proxy is None:
            self._proxy = ProxySet.draw(self.data.train, c.proxy_images, derive_seed(c.seed, 777))
        indices, device, world = self._proxy.score, self.device, self.world
        parent_logits = logits_on(copy.deepcopy(parent).to(device), self.data.train, indices, self.data.spec, device)
        # under torchrun rank r scores candidates r, r + W, ...; the sum across ranks gives every rank all scores
        mine = [0.0] * len(eligible)
        for number, candidate in enumerate(eligible):
            if number % world.size == world.rank:
                score = fidelity(logits_on(candidate.to(device), self.data.train, indices, self.data.spec, device),
                                 parent_logits)
                mine[number] = score if math.isfinite(score) else math.inf
        scores = sum_across(world, *mine)
        best = int(np.argmin(scores))
        if sum_across(world, best)[0] != best * world.size:  # every rank trains the same offspring, or DDP breaks
            raise RuntimeError(f"selection in generation {generation}: the ranks chose different candidates")
        spent = (len(eligible) + 1) * len(indices) * FORWARD_SHARE
        self.recorder.say(f"  gen {generation:02d}: {len(eligible)} of {len(draws)} candidates within the budget, "
                          f"fidelity KL {min(scores):.3f}..{max(scores):.3f} nats; the most faithful is trained")
        return eligible[best], {"candidates": len(eligible), "proxy_score": scores[best], "proxy_images": spent}

    def teacher(self, parent: SqueezeNet | None, force: bool = False) -> SqueezeNet | None:
        """The model an offspring distils from: none for the ancestor or without --distill-weight, else the
        parent or (--distill-from ancestor) generation 0, the strongest model of the run. ``force``: the patient
        recovery's teacher, generation 0, whatever --distill-weight and --distill-from say."""
        c = self.config
        if parent is None or (c.distill_weight <= 0 and not force):
            return None
        if c.distill_from == "parent" and not force:
            return parent
        if self._ancestor is None:
            self._ancestor = load_weights(self.layout.root / self.ancestor_weights, "cpu").eval()
        return self._ancestor

    def resume_point(self, generation: int, index: int) -> dict | None:
        """The training checkpoint, if it is this offspring's (a leftover of a finished one is ignored)."""
        barrier(self.world)  # every rank sees the same checkpoint
        if not self.layout.checkpoint.is_file():
            return None
        checkpoint = load_checkpoint(self.layout.checkpoint)
        return checkpoint if (checkpoint["generation"], checkpoint["offspring"]) == (generation, index) else None

    def breed(self, generation: int, index: int, parent: SqueezeNet | None, env_factor: float,
              recovery: bool = False) -> dict:
        """Train one offspring to the end (resuming from the checkpoint if it is this one's) and record it.
        ``recovery``: the final fine-tune of ``parent`` itself for --final-epochs (the learning rate rewound
        to its peak and decayed again, as every offspring's is: Renda et al. 2020's LR rewinding).

        The epochs are host/evolve/offspring.py's ``train_offspring``: a diverging epoch is rolled back and
        retried at half the rate, up to MAX_RETRIES times, then the run stops with a HostError naming the rate
        to resume with; the rate's scale is kept in the checkpoint (host/evolve/checkpoints.py's TrainingState)."""
        c, layout = self.config, self.layout
        epochs = c.ancestor_epochs if parent is None else (c.final_epochs if recovery else c.epochs)
        checkpoint = self.resume_point(generation, index)
        if checkpoint is not None:
            state = read_training_state(checkpoint, c.dropout)
            for epoch, stats in enumerate(state.history):
                self.recorder.epoch(generation, index, epoch, stats)
            log.info("resuming generation %d offspring %d after epoch %d", generation, index, state.epochs_done)
        else:
            model, lam, choice = self.new_offspring(generation, index, parent, env_factor, recovery)
            state = TrainingState(generation, index, model, lam, choice=choice)
        state.model = state.model.to(self.device).to(memory_format=torch.channels_last)
        settings = self.settings(epochs)
        patient = recovery and c.recovery == "patient"
        if patient:  # function matching (Beyer et al. 2022): the ancestor's answers alone, on mixed images
            settings = dataclasses.replace(settings, distill_only=True, mixup_alpha=config_module.PATIENT_MIXUP_ALPHA)
        teacher = self.teacher(parent, force=patient)
        if teacher is not None:
            teacher = teacher.to(self.device).to(memory_format=torch.channels_last)
        state = train_offspring(state, epochs, settings, data=self.data, device=self.device,
                                teacher=teacher, recorder=self.recorder, world=self.world, seed=c.seed,
                                checkpoint_path=layout.checkpoint, resume_hint=f"host-evolve --resume {c.out}",
                                base_lr=c.lr)
        model, lam, choice, lr_scale, train_seconds = (state.model, state.lam, state.choice, state.lr_scale,
                                                       state.train_seconds)
        scores = evaluate(model, self.data.val, self.data.spec, self.device)
        weights = layout.offspring_weights(generation, index)
        self.recorder.model(model, weights, c.dropout)
        genome = model.genome
        row = {"generation": generation, "offspring": index, "parent": None if parent is None else generation - 1,
               "genome": genome.to_json(), "params": genome.params, "size_bytes": genome.size_bytes,
               "macs": genome.macs(c.image_size), "top1": scores["top1"], "top5": scores["top5"],
               "val_counts": scores["val_counts"],
               "train_seconds": train_seconds, "lambda": lam, "weights": layout.relative(weights),
               "env_factor": None if parent is None else env_factor, "lr_scale": lr_scale,
               "proxy_images": choice.get("proxy_images"), "candidates": choice.get("candidates")}
        if c.fps_weight > 0 and parent is not None:  # measured once, on rank 0; every rank must pick the same
            row["local_fps"] = broadcast(self.world, self.offspring_fps(model) if self.world.is_main else None)
        self.recorder.offspring(row)
        barrier(self.world)
        return row

    def offspring_fps(self, model: SqueezeNet) -> float:
        """Local ONNX Runtime speed of an offspring that is not exported yet (fitness with --fps-weight)."""
        path = self.layout.speed_probe
        path.write_bytes(onnx_from_model(model, self.data.spec).SerializeToString())
        try:
            return self.measure_fps(path, self.config.latency_seconds)
        finally:
            path.unlink(missing_ok=True)

    # -- one generation --------------------------------------------------------------------------
    def breed_generation(self, generation: int, parent: SqueezeNet | None, parent_top1: float | None,
                         env_factor: float, recovery: bool = False, first_index: int = 0) -> tuple[dict, str | None]:
        """Heredity, synthesis, training and evaluation of the generation's offspring (one for the ancestor
        and the recovery fine-tune, K otherwise), then acceptance: while the fittest has collapsed (near
        chance, or more than --max-drop below its parent: host/evolve/steering.py collapse_reason), one more offspring
        is drawn at a milder R (steering.milder_env_factor), up to --redraws times. Returns the fittest and,
        when even it collapsed, why (the generation is then not accepted). Offspring already in the lineage
        (a resumed run) are not bred again. ``first_index``: the offspring number of the first one bred (the
        recovery after a generation that was not accepted is numbered after that generation's draws)."""
        c = self.config
        done = {row["offspring"]: row for row in self.lineage.offspring(generation)
                if recovery or parent is None or row["lambda"] is not None}  # draws and a recovery never mix
        regular = 1 if parent is None or recovery else c.offspring
        for index in range(first_index, first_index + regular):
            if index not in done:
                done[index] = self.breed(generation, index, parent, env_factor, recovery)
        rows = [done[index] for index in range(first_index, first_index + regular)]
        best = max(rows, key=lambda o: fitness(o, c.fps_weight, c.target_fps))
        verdict = collapse_reason(generation, best["top1"], parent_top1, self.num_classes, c.max_drop,
                                  self._ancestor_top1, c.max_total_drop, **self.judged_on())
        for attempt in range(1, (c.redraws if parent is not None and not recovery else 0) + 1):
            if verdict is None:
                break
            milder = milder_env_factor(env_factor, attempt)
            index = first_index + regular + attempt - 1
            if index not in done:
                self.recorder.warn(f"{verdict}: not accepted; redrawing it at R = {milder:.4f} "
                                   f"(redraw {attempt} of {c.redraws})")
                done[index] = self.breed(generation, index, parent, milder)
            rows.append(done[index])
            best = max(rows, key=lambda o: fitness(o, c.fps_weight, c.target_fps))
            verdict = collapse_reason(generation, best["top1"], parent_top1, self.num_classes, c.max_drop,
                                      self._ancestor_top1, c.max_total_drop, **self.judged_on())
        return best, verdict

    def judged_on(self) -> dict:
        """What acceptance judges a top-1 against: chance (1/N or the validation split's majority share) and the
        split's size (drops counted in whole images)."""
        support = np.bincount(np.asarray(self.data.val.labels, dtype=np.int64), minlength=self.num_classes)
        return {"chance": chance_share(self.num_classes, {"support": support.tolist()}),
                "images": int(support.sum())}

    def export_and_record(self, generation: int, best: dict, parent: SqueezeNet | None,
                          recovery: bool = False) -> dict:
        """Export the fittest offspring as the generation's ONNX (rank 0) and record it in the lineage."""
        c = self.config
        env_factor = best.get("env_factor")
        if not self.world.is_main:
            barrier(self.world)  # rank 0 exports and records; the others only need the weights, already written
            return dict(best)
        model = load_weights(self.layout.root / best["weights"], "cpu")
        folder = self.layout.generation_dir(generation)
        card = export_generation(model, folder, spec=self.data.spec, labels=self.data.labels, generation=generation,
                                 parity_images=parity_images(self.data), fp16=c.fp16_onnx,
                                 extra_card={"top1": best["top1"], "top5": best["top5"], "parent": best["parent"],
                                             "env_factor": env_factor,
                                             **({"recovery_of": generation - 1} if recovery else {})})
        row = dict(best, env_factor=env_factor, onnx=self.layout.relative(folder / MODEL_ONNX),
                   sha256=card["sha256"], labels=self.layout.relative(folder / LABELS_TXT),
                   card=self.layout.relative(folder / CARD_JSON))
        self.recorder.generation(row, self.layout.checkpoint, describe(row))
        barrier(self.world)
        return row

    def fps_for_steering(self, row: dict) -> float:
        """The generation's fps from --latency-from (host/evolve/latency.py: steering_fps), measured on rank 0."""
        fps = None
        if self.world.is_main:
            fps = steering_fps(self.config, self.lineage, self.layout.root, row, self.measure_fps, tqdm.write)
        return broadcast(self.world, fps)

    def warn_if_below_tolerance(self, row: dict, ancestor: dict) -> None:
        """A generation accepted (not collapsed) but below the ancestor by more than --top1-tolerance is said as
        it happens: best_generation will not name it."""
        drop = ancestor["top1"] - row["top1"]
        if row["generation"] > 0 and drop > self.config.top1_tolerance:
            self.recorder.warn(f"generation {row['generation']}: top-1 {100 * row['top1']:.1f} % is {100 * drop:.1f} "
                               f"points below the ancestor's {100 * ancestor['top1']:.1f} % (--top1-tolerance "
                               f"{100 * self.config.top1_tolerance:g}): best_generation will not be this one")

    # -- the evolution ---------------------------------------------------------------------------
    def run(self) -> dict:
        """The paper's loop, with selection and acceptance: the ancestor, then generation after generation:
        heredity from the parent, offspring synthesized (the fittest of --candidates draws), trained and
        evaluated; a collapsed one is redrawn and, if it stays collapsed, ends the run unaccepted; the fittest
        is exported and recorded, then the rules (host/evolve/steering.py) choose the next R or stop, and the
        generation is selected as the next parent."""
        c = self.config
        finished = {row["generation"]: row for row in self.lineage.generations()}  # a resumed run's
        bar = tqdm(range(c.generations + 1), desc="evolution", unit="gen", dynamic_ncols=True,
                   disable=bars_disabled(not self.world.is_main))  # a terminal only (host/evolve/progress.py)
        parent, row, env_factor, stop_reason = None, None, c.env_factor, None  # generation 0: no parent
        for generation in bar:
            if generation in finished and not self.ended_here(finished[generation]):
                row = finished[generation]
            else:
                best, verdict = self.breed_generation(generation, parent, row["top1"] if row else None, env_factor)
                if verdict is not None and parent is not None:
                    stop_reason = (f"{verdict}; not accepted after {c.redraws} redraw(s) at a milder R. The run ends "
                                   f"at generation {generation - 1}: for more, start a new run from it with a milder "
                                   f"--env-factor or more --epochs (--ancestor-from {self.layout.root / row['weights']} --ancestor-epochs 0)")
                    self.recorder.warn(stop_reason)
                    break
                row = self.export_and_record(generation, best, parent)  # the ancestor is kept whatever it scored
            if generation == 0:
                self.ancestor_weights, self._ancestor_top1 = row["weights"], row["top1"]
                ancestor = row
                small = small_split_warning(self.judged_on()["images"], c.top1_tolerance,
                                            c.max_drop if c.max_drop < 1 else None)
                if small:
                    self.recorder.warn(small)
                verdict = collapse_reason(0, row["top1"], None, self.num_classes, c.max_drop, **self.judged_on())
                if verdict is not None:  # bred on (the mechanics are the user's to try) but never named best
                    self.recorder.warn(f"{verdict}: the ancestor did not learn, and no generation of this run will be "
                                       "named best_generation. Lower --lr (e.g. --lr 0.002), train it longer "
                                       "(--ancestor-epochs), or check that the class folders hold what their names say")
            self.warn_if_below_tolerance(row, ancestor)
            fps = self.fps_for_steering(row) if c.target_fps > 0 else None
            predicted = ancestor_ms = None
            if c.target_speedup > 0:  # --budget latency: the table's prediction of this generation and gen 0
                predicted = self.priced().of_genome(Genome.from_dict(json.loads(row["genome"])))
                ancestor_ms = self.priced().of_genome(Genome.from_dict(json.loads(ancestor["genome"])))
            env_factor, stop_reason = next_step(c, generation, row, fps, env_factor, predicted, ancestor_ms)
            if fps is not None:
                self.recorder.say(f"  measured {fps:.0f} fps ({c.latency_from}), target {c.target_fps:.0f}: "
                                  + ("met" if fps >= c.target_fps else f"next R = {env_factor:.3f}"))
            if generation not in finished:
                self.recorder.summary(self.layout, self.data)
            if stop_reason:
                break
            parent = load_weights(self.layout.root / row["weights"], "cpu")  # selection: the next parent
        bar.close()
        if c.final_epochs > 0 and row["generation"] > 0:
            row = self.recover(row, finished)
        summary = self.recorder.summary(self.layout, self.data, stop_reason)  # {} on the other ranks
        if stop_reason:
            self.recorder.say(f"stopped: {stop_reason}")
        # the checkpoint of a finished run is gone; the decoded-image cache is kept for reruns
        return summary

    def ended_here(self, row: dict) -> bool:
        """Whether a recorded generation is the recovery of a run that ended because this generation's draws were
        not accepted (they are in the lineage beside it): a resume judges the draws again and stops there. Any
        other recorded generation, a recovery at the end of a run included, is taken as it is (a resume with more
        --generations breeds on from it)."""
        return is_recovery(row) and any(o["lambda"] is not None for o in self.lineage.offspring(row["generation"]))

    def recover(self, last: dict, finished: dict) -> dict:
        """The recovery fine-tune (--final-epochs): the last generation trained on, every filter kept,
        recorded as one more generation (same genome, env_factor 1, no lambda; its card says
        ``recovery_of``), so its ONNX, report point and device figures come as every generation's do."""
        generation = last["generation"] + 1
        if generation in finished:  # a resumed run that had finished it
            return finished[generation]
        # a run that ended because this generation was not accepted holds its draws: the recovery comes after them
        drawn = [row["offspring"] for row in self.lineage.offspring(generation) if row["lambda"] is not None]
        parent = load_weights(self.layout.root / last["weights"], "cpu")
        self.recorder.say(f"recovery fine-tune of generation {last['generation']} for {self.config.final_epochs} epochs")
        best, verdict = self.breed_generation(generation, parent, last["top1"], 1.0, recovery=True,
                                              first_index=max(drawn) + 1 if drawn else 0)
        if verdict is not None:  # the fine-tune made it worse beyond the limit: the last generation stands
            self.recorder.warn(f"recovery fine-tune: {verdict}; not accepted, generation {last['generation']} stands")
            return last
        return self.export_and_record(generation, dict(best, env_factor=1.0), parent, recovery=True)


def check_block(round_to: int, block: int, why: str) -> None:
    """HostError when --round-to is off the latency table's channel block (widths off it run slower)."""
    if round_to % block:
        raise HostError(f"--budget latency with --round-to {round_to}: widths off the block of {block} run "
                        f"slower ({why}); give --round-to {block} or a multiple of it")


def is_recovery(row: dict) -> bool:
    """Whether a generation row is a recovery fine-tune (--final-epochs): bred from its parent with every filter
    kept, so with no lambda; the ancestor (generation 0) has none either and is not one."""
    return row["generation"] > 0 and row.get("lambda") is None


def describe(row: dict) -> str:
    """A generation's console line: size, MACs, top-1 with its image counts and 95 % interval, top-5, its ONNX."""
    return (f"gen {row['generation']:02d}: {row['params']:,} params ({row['size_bytes'] / 1e6:.3f} MB), "
            f"{row['macs'] / 1e6:.1f} M MACs, top-1 {top1_text(row)}, top-5 {100 * row['top5']:.1f} %, "
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
