"""The trainer core shared by every objective: processes, precision, accumulation, checkpoints.

One command runs single-process or under `torchrun --nproc_per_node N` (gloo on CPU, nccl on
GPU). Gradients are averaged across processes by one coalesced all-reduce per optimizer step
rather than by wrapping the model in DistributedDataParallel: objectives call several submodules
(text encoder, `dit.condition`, `dit.forward`), which DDP's forward hook would not see, and an
explicit all-reduce makes the N-process run equal the one-process run with the same global batch.

Exactness: all randomness that shapes a step (data order, crops, noise, t, dropout) is a function
of (seed, step, global item index), never of a process's RNG stream. So resuming from a checkpoint
and splitting a batch over processes both reproduce the uninterrupted single-process run; RNG
states are still saved and restored for anything that does draw from the global generators.

Checkpoints are single files `step-XXXXXXXX.ckpt`: a header with the SHA-256 of the torch.save
payload, written to a temp file and renamed into place, so a truncated or corrupted file is
detected on load and the previous checkpoint stays usable.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import CheckpointError, TrainingError
from .config import TrainConfig

MAGIC = b"LMDMCKPT1\n"


@dataclass
class Phase:
    """One optimizer: a named group of parameters stepped together (a GAN has two)."""

    name: str
    params: list[tuple[str, nn.Parameter]]
    lr: float | None = None          # None = optim.lr
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    lr_mults: dict[str, float] = field(default_factory=dict)   # parameter name -> multiplier of the phase's lr


class Objective:
    """What an objective provides to the loop. Subclasses fill these in."""

    modules: dict[str, nn.Module]    # everything checkpointed, by name
    phases: list[Phase]              # optimizer groups; phases[0] is the one EMA follows
    frames_per_item: int = 0         # latent frames per item (throughput)
    seconds_per_item: float = 0.0    # seconds of audio per item (throughput)

    def num_items(self) -> int: ...
    def load_batch(self, indices: list[int], epochs: list[int], keys: list[int]) -> dict: ...
    def loss(self, phase: str, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, float]]: ...
    def describe(self, batch: dict) -> str:
        return ", ".join(batch.get("paths", [])) or "?"
    def on_step(self, step: int) -> None: ...                           # after every optimizer step
    def demo(self, step: int, folder: Path) -> None: ...
    def evaluate(self, step: int) -> dict[str, float]:
        return {}
    def export(self, folder: Path, ema: dict[str, torch.Tensor] | None) -> None: ...


def item_order(seed: int, n_items: int, start: int, count: int) -> tuple[list[int], list[int]]:
    """Dataset indices (and their epochs) for global item positions start .. start+count-1: a fresh
    permutation per epoch, a pure function of (seed, epoch)."""
    idx, epochs, perms = [], [], {}
    for pos in range(start, start + count):
        epoch = pos // n_items
        if epoch not in perms:
            perms[epoch] = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx.append(int(perms[epoch][pos % n_items]))
        epochs.append(epoch)
    return idx, epochs


def item_generator(seed: int, key: int, salt: int = 0) -> torch.Generator:
    """The generator for one item's randomness (noise, t, dropout): a function of seed and key."""
    return torch.Generator().manual_seed((seed * 7_919 + key * 104_729 + salt) % (2 ** 63))


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    o, total = cfg.optim, cfg.run.steps

    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
        if o.schedule == "cosine":
            frac = min(1.0, step / max(1, total))
            return warm * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
        if o.schedule == "inverse":
            return warm * (1 + step / o.inv_gamma) ** -o.inv_power
        return warm
    return f


# -- checkpoint files ---------------------------------------------------------------------------

def with_ema(module: torch.nn.Module, ema: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """A copy of `module` carrying the EMA weights (the module itself is left untouched)."""
    import copy
    out = copy.deepcopy(module)
    if ema is not None:
        with torch.no_grad():
            for name, value in ema.items():
                out.get_parameter(name).copy_(value)
    return out


def write_checkpoint(payload: dict, path: Path) -> Path:
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint, verifying its checksum; CheckpointError naming the file otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    head = len(MAGIC) + 65
    if not raw.startswith(MAGIC) or len(raw) < head:
        raise CheckpointError(f"{path} is not an lmdm training checkpoint (bad header; truncated?)")
    digest, data = raw[len(MAGIC):head - 1].decode(errors="replace"), raw[head:]
    if hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(f"{path} is corrupt or truncated: checksum mismatch ({len(data)} payload bytes)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # checksum passed, so this is a version problem, not corruption
        raise CheckpointError(f"{path} could not be unpickled: {e}") from e


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in folder, oldest first."""
    return sorted(folder.glob("step-*.ckpt"))


# -- the loop -------------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """From torchrun's environment (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(dist.get_rank() if world > 1 else 0, world, device)


class Trainer:
    def __init__(self, objective: Objective, cfg: TrainConfig, ddp: Dist | None = None):
        self.obj, self.cfg, r = objective, cfg, cfg.run
        self.dist = ddp or init_distributed()
        per = self.dist.world * r.accumulate
        if r.batch_size % per:
            raise TrainingError(f"run.batch_size={r.batch_size} is not divisible by processes × accumulate = "
                                f"{self.dist.world} × {r.accumulate}")
        self.micro = r.batch_size // per
        self.out = Path(r.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.step = 0
        if self.dist.world > 1:  # identical start everywhere, whatever each process initialised
            for m in objective.modules.values():
                for t in [*m.parameters(), *m.buffers()]:
                    dist.broadcast(t.data, 0)
        o = cfg.optim
        self.optimizers, self.schedulers, self.scalers = [], [], []
        fp16 = r.precision == "fp16"
        for ph in objective.phases:
            params = [p for _, p in ph.params]
            if not params:
                raise TrainingError(f"phase {ph.name!r} has no trainable parameters (check finetune.trainable)")
            lr = ph.lr or o.lr
            # the base group first, so the logged lr (group 0) is the phase's own
            mults = sorted({ph.lr_mults.get(n, 1.0) for n, _ in ph.params}, key=lambda m: (m != 1.0, m))
            params = [{"params": [p for n, p in ph.params if ph.lr_mults.get(n, 1.0) == m], "lr": lr * m}
                      for m in mults]
            opt = torch.optim.AdamW(params, lr=lr, betas=tuple(ph.betas or o.betas),
                                    weight_decay=o.weight_decay if ph.weight_decay is None else ph.weight_decay,
                                    eps=o.eps)
            self.optimizers.append(opt)
            self.schedulers.append(torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg)))
            self.scalers.append(torch.amp.GradScaler(self.dist.device.type, enabled=fp16))
        self.ema = ({n: p.detach().float().clone() for n, p in objective.phases[0].params}
                    if r.ema_decay > 0 else None)
        self.tb = None

    # -- state ----------------------------------------------------------------------------------

    def state(self) -> dict:
        np_state = np.random.get_state()
        return {"step": self.step, "config": self.cfg.to_dict(), "world": self.dist.world,
                "modules": {k: m.state_dict() for k, m in self.obj.modules.items()},
                "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers],
                "scalers": [s.state_dict() for s in self.scalers], "ema": self.ema,
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}}

    def load_state(self, ck: dict, source: str) -> None:
        old = ck["config"]["run"]
        for key in ("batch_size", "seed"):
            if old[key] != getattr(self.cfg.run, key):
                raise TrainingError(f"cannot resume from {source}: run.{key} was {old[key]}, now "
                                    f"{getattr(self.cfg.run, key)} (the data order would change)")
        for name, module in self.obj.modules.items():
            module.load_state_dict(ck["modules"][name])
        for o, s in zip(self.optimizers, ck["optimizers"]):
            o.load_state_dict(s)
        for o, s in zip(self.schedulers, ck["schedulers"]):
            o.load_state_dict(s)
        for o, s in zip(self.scalers, ck["scalers"]):
            o.load_state_dict(s)
        if (self.ema is None) != (ck["ema"] is None):
            raise TrainingError(f"cannot resume from {source}: run.ema_decay switched on/off")
        self.ema = ck["ema"]
        self.step = ck["step"]
        rng = ck["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in rng["python"]))
        n = rng["numpy"]
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))

    def save(self) -> Path | None:
        if not self.dist.main:
            return None
        path = write_checkpoint(self.state(), self.out / f"step-{self.step:08d}.ckpt")
        for old in list_checkpoints(self.out)[:-self.cfg.run.keep_checkpoints]:
            old.unlink()
        return path

    def resume(self) -> Path | None:
        """Load the newest readable checkpoint; a corrupt newer one is reported and passed over."""
        for path in reversed(list_checkpoints(self.out)):
            try:
                ck = read_checkpoint(path)
            except CheckpointError as e:
                warnings.warn(f"skipping checkpoint: {e}", stacklevel=2)
                continue
            self.load_state(ck, str(path))
            return path
        return None

    # -- one optimizer step -----------------------------------------------------------------------

    def _autocast(self):
        p = self.cfg.run.precision
        if p == "fp32":
            return nullcontext()
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def _all_reduce(self, params: list[nn.Parameter]) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if self.dist.world > 1:
            flat = torch.cat([g.flatten() for g in grads])
            dist.all_reduce(flat)
            flat /= self.dist.world
            offset = 0
            for p, g in zip(params, grads):
                p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
                offset += g.numel()

    def train_step(self) -> dict[str, float]:
        r, d = self.cfg.run, self.dist
        base = self.step * r.batch_size
        metrics: dict[str, float] = {}
        batches = []
        for m in range(r.accumulate):  # global item order: micro-step, then process, then item
            start = base + (m * d.world + d.rank) * self.micro
            idx, epochs = item_order(r.seed, self.obj.num_items(), start, self.micro)
            batches.append(self.obj.load_batch(idx, epochs, list(range(start, start + self.micro))))
        for phase, opt, sched, scaler in zip(self.obj.phases, self.optimizers, self.schedulers, self.scalers):
            opt.zero_grad(set_to_none=True)
            for batch in batches:
                with self._autocast():
                    loss, extra = self.obj.loss(phase.name, batch, self.step)
                bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach())) else 1.0)
                if d.world > 1:
                    dist.all_reduce(bad, op=dist.ReduceOp.MAX)
                if bad.item():
                    raise TrainingError(f"non-finite {phase.name} loss at step {self.step + 1} (process {d.rank}); "
                                        f"batch: {self.obj.describe(batch)}. The last good checkpoint is kept in "
                                        f"{self.out}")
                scaler.scale(loss / r.accumulate).backward()
                for k, v in {f"{phase.name}_loss" if len(self.obj.phases) > 1 else "loss": float(loss.detach()), **extra}.items():
                    metrics[k] = metrics.get(k, 0.0) + v / r.accumulate
            params = [p for _, p in phase.params]
            self._all_reduce(params)
            scaler.unscale_(opt)
            if self.cfg.optim.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
                metrics[f"{phase.name}_grad_norm"] = float(norm)
            scaler.step(opt)
            scaler.update()
            sched.step()
            metrics[f"{phase.name}_lr"] = sched.get_last_lr()[0]
        self.step += 1
        if self.ema is not None:
            decay = self.cfg.run.ema_decay
            with torch.no_grad():
                for n, p in self.obj.phases[0].params:
                    self.ema[n].lerp_(p.detach().float(), 1 - decay)
        self.obj.on_step(self.step)
        return metrics

    # -- the run ------------------------------------------------------------------------------------

    def log(self, record: dict) -> None:
        if not self.dist.main:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.out / "tb"))
            except ImportError:   # TensorBoard is optional
                self.tb = False
        if self.tb:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def fit(self, resume: bool = False, stop_at: int | None = None) -> dict[str, float]:
        """Train to run.steps (or stop early after optimizer step `stop_at`, checkpointing there:
        the schedule still follows run.steps, so a later `fit(resume=True)` continues exactly)."""
        from tqdm import tqdm
        r = self.cfg.run
        if r.threads:
            torch.set_num_threads(r.threads)
        if resume:
            self.resume()
        bar = tqdm(total=r.steps, initial=self.step, desc="lmdm train", unit="step",
                   disable=not (r.progress and self.dist.main), dynamic_ncols=True)
        window, t0, n0, last = {}, time.perf_counter(), self.step, {}
        try:
            end = min(r.steps, stop_at or r.steps)
            while self.step < end:
                metrics = self.train_step()
                for k, v in metrics.items():
                    window[k] = window.get(k, 0.0) + v
                dt = max(time.perf_counter() - t0, 1e-9)
                items = (self.step - n0) * r.batch_size
                speed = {"frames_per_s": items * self.obj.frames_per_item / dt,
                         "audio_s_per_s": items * self.obj.seconds_per_item / dt}
                loss_key = next(iter(metrics))
                bar.set_postfix({"loss": f"{metrics[loss_key]:.4f}",
                                 "lr": f"{metrics[f'{self.obj.phases[0].name}_lr']:.2e}",
                                 "fr/s": f"{speed['frames_per_s']:.0f}", "audio s/s": f"{speed['audio_s_per_s']:.2f}"})
                bar.update(1)
                if self.step % r.log_every == 0 or self.step == r.steps:
                    n = (self.step - 1) % r.log_every + 1
                    last = {"step": self.step, **{k: v / n for k, v in window.items()}, **speed,
                            "time": time.time()}
                    self.log(last)
                    window, t0, n0 = {}, time.perf_counter(), self.step
                if r.eval_every and self.step % r.eval_every == 0 and self.dist.main:
                    self.log({"step": self.step, **self.obj.evaluate(self.step)})
                if r.demo_every and self.step % r.demo_every == 0 and self.dist.main:
                    self.obj.demo(self.step, self.out / "demos")
                if self.step % r.checkpoint_every == 0 or self.step == end:
                    self.save()
                if self.dist.world > 1:
                    dist.barrier()
        finally:
            bar.close()
            if self.tb:
                self.tb.close()
        if r.export and self.dist.main and self.step == r.steps:
            self.obj.export(self.out / "model", self.ema)
        return last
