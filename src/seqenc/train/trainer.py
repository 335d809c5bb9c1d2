"""The training loop: AdamW, linear warm-up and decay, accumulation, clipping, bf16 autocast,
evaluation with early stopping, atomic checkpoints, exact resume and DDP.

Output directory::

    DIR/                       the final model (best dev checkpoint, else the last one):
                               a sentence-encoder directory plus the task's head files
    DIR/checkpoints/last/      model + trainer_state.pt (optimizer, scheduler, RNG, position,
                               plan number)
    DIR/checkpoints/best/      model with the best dev metric so far
    DIR/metrics.jsonl          one JSON object per line: train / eval / end events
    DIR/learning_curves.png
    DIR/training_args.json     TrainConfig and what the run was given

Exactness: the data order is a function of (seed, epoch), masking of (seed, epoch, batch), and
the torch RNG (dropout) is saved with every checkpoint, so a resumed CPU run takes the same
steps, bit for bit, as an uninterrupted one. A checkpoint also holds the number of the plan
that ordered its epochs (data.PLAN_VERSION): one whose plan the present code would not repeat
is refused rather than resumed on other steps.

The loop and what it owes each step (evaluation, best and last checkpoints, resume, logging)
are here; the optimiser and schedule (optim.py), the metrics log (metrics_log.py), checkpoint
files and whether one may resume this run (checkpointing.py), and what the user sees on stderr
(console.py) live apart.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqenc import atomic
from seqenc.allocator import release_free_memory

from . import checkpointing as ckpt
from . import distributed as D
from .checkpointing import TrainerState  # (public here before it moved)
from .config import TrainConfig
from .console import TrainConsole
from .data import PLAN_VERSION, plan_epoch
from .metrics_log import Meter, MetricsLog, read_metrics
from .optim import build_optimizer, warmup_linear
from .tasks import Batch, Task, batch_key, trim

# Optimizer steps between malloc_trim calls: batches of ever-different shapes fragment the
# heap (MLM, 400 steps: peak RSS 1,132 MiB without, 786 MiB trimming every 10 steps).
_RELEASE_EVERY = 25

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "learning_curves.png"
ARGS_FILE = "training_args.json"


@dataclass
class TrainResult:
    output: Path
    steps: int
    total_steps: int
    finished: bool  # False when stopped by stop_after (as if interrupted)
    stopped_early: bool
    best_step: int | None
    best_metrics: dict[str, float] | None
    last_metrics: dict[str, float] | None
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains ``task.model`` by ``cfg``, writing into ``output`` (main process only)."""

    def __init__(self, task: Task, cfg: TrainConfig, output: str | Path,
                 ctx: D.DistContext | None = None, run_info: dict[str, Any] | None = None,
                 echo: Callable[[str], None] | None = None, progress: bool | None = None):
        self.task = task
        self.cfg = cfg
        self.output = Path(output)
        self.ctx = ctx or D.DistContext(device=D.resolve_device(cfg.device))
        self.run_info = run_info or {}
        self.device = self.ctx.device
        if cfg.batch_size % self.ctx.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over "
                             f"{self.ctx.world_size} processes")
        if cfg.dtype == "bfloat16" and self.device.type == "cpu" \
                and not torch.backends.mkldnn.is_available():  # pragma: no cover
            raise ValueError("bfloat16 autocast on CPU needs a oneDNN build of torch")
        self.console = TrainConsole(self.ctx.is_main, echo, progress)
        self.log = MetricsLog(self.output / METRICS_FILE) if self.ctx.is_main else None
        self.state = TrainerState()
        self._saved_step: int | None = None  # the step of the last checkpoint written
        task.model.to(self.device)
        self.model = D.wrap(task.model, self.ctx)

    # ---- paths ---------------------------------------------------------------------------------
    @property
    def last_dir(self) -> Path:
        return self.output / "checkpoints" / "last"

    @property
    def best_dir(self) -> Path:
        return self.output / "checkpoints" / "best"

    # ---- the loop ------------------------------------------------------------------------------
    def train(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to the end (or early stop). ``stop_after`` ends the run after that many steps,
        leaving a checkpoint, as if it were interrupted there."""
        run = self._start(resume)
        try:
            while not self._should_stop(run, stop_after):
                self._take_step(run)
        except KeyboardInterrupt:
            # Weights are as after the last whole step; restart the interrupted one on resume.
            self.console.say(f"interrupted: saving a checkpoint at step {self.state.step} "
                      f"({self.last_dir})")
            self._save_last(run, run.step_rng)
            raise
        finally:
            run.bar.close()
        finished = self.state.step >= run.total or self.state.stopped_early
        if finished:
            self._finish(run.last_metrics)
        elif stop_after is not None and self._saved_step != self.state.step:
            self._save_last(run, ckpt.rng_state())
        return self._result(run.total, finished, run.last_metrics)

    def _start(self, resume: bool) -> _Run:
        """Plan the run, build the optimizer and schedule, and restore or record the state."""
        cfg, task = self.cfg, self.task
        torch.manual_seed(cfg.seed)
        if self.ctx.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
        steps_per_epoch = len(self._plan(0).steps)
        if steps_per_epoch == 0:
            raise ValueError(f"no full batch: {len(task.train_lengths)} training examples for "
                             f"{self.ctx.world_size} processes")
        total = cfg.max_steps or cfg.epochs * steps_per_epoch
        optimizer = build_optimizer(task.model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_linear(math.ceil(cfg.warmup_ratio * total), total))
        if resume:
            self._restore(optimizer, scheduler)
        elif self.ctx.is_main:
            self._write_args(total, steps_per_epoch)
        # Loaders (SentenceEncoder, from_pretrained) hand models over in eval mode: dropout on.
        task.model.train()
        self.console.say(
            f"training {sum(p.numel() for p in task.model.parameters()):,} parameters: "
            f"{total} steps ({steps_per_epoch}/epoch), global batch {cfg.batch_size} x "
            f"{cfg.grad_accum} accumulation, {self.ctx.world_size} process(es) on "
            f"{self.device.type}" + (f", resuming at step {self.state.step}" if resume else ""))
        return _Run(optimizer, scheduler, total, steps_per_epoch, self._pending_steps(),
                    self.console.bar(total, self.state.step),
                    start=time.perf_counter() - self.state.elapsed)

    def _should_stop(self, run: _Run, stop_after: int | None) -> bool:
        state = self.state
        return (state.step >= run.total or state.stopped_early
                or (stop_after is not None and state.step >= stop_after))

    def _pending_steps(self) -> Iterator[tuple[int, list[np.ndarray], int]]:
        """(position in its epoch, micro-batches, steps in the epoch) of every step still to
        take: the current epoch from its saved position, then the next epochs whole."""
        while True:
            steps = self._plan(self.state.epoch).steps
            for position in range(self.state.position, len(steps)):
                yield position, steps[position], len(steps)

    def _take_step(self, run: _Run) -> None:
        """One optimizer step, then what is due after it: log, evaluate, checkpoint."""
        state, cfg = self.state, self.cfg
        position, micro, steps_in_epoch = next(run.steps)
        run.step_rng = ckpt.rng_state()  # a checkpoint taken mid-step restarts the step
        run.meter.add(*self._step(micro, state.epoch, position * cfg.grad_accum))
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        if state.step % _RELEASE_EVERY == 0:
            release_free_memory()  # varied batch shapes fragment the heap
        state.position = position + 1
        epoch_end = state.position == steps_in_epoch
        if epoch_end:
            state.epoch, state.position = state.epoch + 1, 0
        state.elapsed = time.perf_counter() - run.start
        if state.step % cfg.log_every == 0 or state.step == run.total:
            self._log_train(run)
        run.bar.update(1)
        evaluate = self._eval_due(run.total, epoch_end)
        if evaluate:
            run.last_metrics = self._evaluate_and_track(run.steps_per_epoch)
        if evaluate or self._save_due(run.total, epoch_end):
            self._save_last(run, ckpt.rng_state())

    def _eval_due(self, total: int, epoch_end: bool) -> bool:
        """With a dev set: every ``eval_every`` steps (else at each epoch's end), and last."""
        step, every = self.state.step, self.cfg.eval_every
        return self.task.n_dev > 0 and (step == total or (
            epoch_end if every is None else step % every == 0))

    def _save_due(self, total: int, epoch_end: bool) -> bool:
        """Last, on early stop, every ``save_every`` steps (else, without a dev set whose
        evaluations save, at each epoch's end)."""
        step, every = self.state.step, self.cfg.save_every
        if step == total or self.state.stopped_early:
            return True
        if every is not None:
            return step % every == 0
        return self.task.n_dev == 0 and epoch_end

    def _plan(self, epoch: int):
        return plan_epoch(self.task.train_lengths, self.cfg.batch_size, self.cfg.seed, epoch,
                          group_by_length=self.cfg.group_by_length,
                          min_batch=self.ctx.world_size, groups=self.task.train_groups,
                          accum=self.cfg.grad_accum)

    def _step(self, micro: list[np.ndarray], epoch: int, first: int) -> tuple[float, int, int, int]:
        """Forward/backward over the step's micro-batches; gradients are left for the optimizer.
        Returns (summed loss, units, examples, real tokens) on this process."""
        cfg, ctx, task = self.cfg, self.ctx, self.task
        batches = [task.collate(idx, batch_key(cfg.seed, epoch, first + j))
                   for j, idx in enumerate(micro)]
        # Every process built the same global batches, so this count is global without a
        # collective; DDP averages gradients over processes, hence the world_size factor.
        units = sum(task.units(b) for b in batches)
        scale = ctx.world_size / max(units, 1)
        loss_total, examples, tokens = 0.0, 0, 0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                  enabled=cfg.dtype == "bfloat16")
        for j, batch in enumerate(batches):
            shard = self._shard(batch)
            sync = j == len(batches) - 1 or not ctx.distributed
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with autocast:
                    loss = task.loss_sum(self.model, shard)
                (loss * scale).backward()
            loss_total += loss.item()
            examples += len(shard["attention_mask"])
            tokens += int(shard["attention_mask"].sum())
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.task.model.parameters(), cfg.max_grad_norm)
        return loss_total, units if ctx.is_main else 0, examples, tokens

    def _shard(self, batch: Batch) -> Batch:
        """This process's contiguous slice of the global batch's rows, on its device."""
        ctx = self.ctx
        if ctx.distributed:
            batch = {k: v.tensor_split(ctx.world_size)[ctx.rank] for k, v in batch.items()}
        return {k: v.to(self.device, non_blocking=True) for k, v in trim(batch).items()}

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Dev metrics of the model as it is (Task.evaluate, over every process)."""
        return self.task.evaluate(self.device, self.ctx)

    def _evaluate_and_track(self, steps_per_epoch: int) -> dict[str, float]:
        state, task = self.state, self.task
        metrics = self.evaluate()
        value = metrics[task.metric]
        better = state.best_value is None or (
            value > state.best_value if task.greater_is_better else value < state.best_value)
        if better:
            state.best_value, state.best_step, state.bad_evals = value, state.step, 0
            if self.ctx.is_main:
                ckpt.write_atomic_dir(self.best_dir, task.save)
        else:
            state.bad_evals += 1
            if self.cfg.patience is not None and state.bad_evals >= self.cfg.patience:
                state.stopped_early = True
        record = {"event": "eval", "step": state.step,
                  "epoch": round(state.step / steps_per_epoch, 4), **metrics,
                  "best": better, "elapsed_s": round(state.elapsed, 2)}
        if self.log:
            self.log.write(record)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        self.console.say(f"step {state.step}: dev {shown}" + (" (best)" if better else "")
                  + (" - early stop" if state.stopped_early else ""))
        if self.ctx.is_main:
            self._plot()
        return metrics

    # ---- checkpoints ---------------------------------------------------------------------------
    def _save_last(self, run: _Run, rng: dict[str, Any]) -> None:
        self._saved_step = self.state.step
        if not self.ctx.is_main:
            return

        def write(directory: Path) -> None:
            self.task.save(directory)
            ckpt.save_state(directory, {
                "trainer": asdict(self.state),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "rng": rng,
                "config": self.cfg.to_dict(),
                "world_size": self.ctx.world_size,
                "plan": PLAN_VERSION,
            })

        ckpt.write_atomic_dir(self.last_dir, write)

    def _restore(self, optimizer, scheduler) -> None:
        last = ckpt.find_checkpoint(self.last_dir) if self.ctx.is_main else self.last_dir
        D.barrier(self.ctx)  # the main process may have repaired an interrupted swap
        if last is None or not last.exists():
            raise FileNotFoundError(f"nothing to resume: {self.last_dir} does not exist")
        saved = ckpt.load_resumable(last, self.cfg, self.task.train_groups)
        self.task.load(last)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        self.state = TrainerState(**saved["trainer"])
        self._saved_step = self.state.step
        if self.log:
            self.log.truncate_after(self.state.step)
        ckpt.set_rng_state(saved["rng"])

    def _finish(self, last_metrics: dict[str, float] | None) -> None:
        """Export the final model to the top of the output directory (main process)."""
        D.barrier(self.ctx)
        source = self.best_dir if self.best_dir.exists() else self.last_dir
        if source == self.best_dir and self.state.best_step != self.state.step:
            self.task.load(source)  # leave the best weights in memory too
        if not self.ctx.is_main:
            return
        ckpt.export_model(source, self.output)
        end = {"event": "end", "step": self.state.step, "best_step": self.state.best_step,
               f"best_{self.task.metric}": self.state.best_value,
               "stopped_early": self.state.stopped_early,
               "elapsed_s": round(self.state.elapsed, 2), "exported_from": source.name}
        self.log.write(end)
        self._plot()
        self.console.say(f"done in {self.state.elapsed:.1f}s: model written to {self.output}")

    def _write_args(self, total: int, steps_per_epoch: int) -> None:
        from seqenc import __version__

        args = {"train_config": self.cfg.to_dict(), "total_steps": total,
                "steps_per_epoch": steps_per_epoch, "world_size": self.ctx.world_size,
                "seqenc_version": __version__, "torch_version": torch.__version__,
                **self.run_info}
        atomic.write_text(self.output / ARGS_FILE, json.dumps(args, indent=2) + "\n")
        if self.log and self.log.path.exists():
            self.log.path.unlink()  # a fresh run starts a fresh log

    # ---- reporting -----------------------------------------------------------------------------
    def _log_train(self, run: _Run) -> None:
        meter = run.meter
        loss_sum, units, examples, tokens = D.all_reduce_sum(meter.totals(), self.ctx)
        seconds = meter.seconds()
        record = {"event": "train", "step": self.state.step,
                  "epoch": round(self.state.step / run.steps_per_epoch, 4),
                  "loss": loss_sum / max(units, 1), "lr": run.scheduler.get_last_lr()[0],
                  "examples_per_s": round(examples / seconds, 2),
                  "tokens_per_s": round(tokens / seconds, 1),
                  "elapsed_s": round(self.state.elapsed, 2)}
        meter.reset()
        if self.log:
            self.log.write(record)
        run.bar.set_postfix(loss=f"{record['loss']:.4f}", ex_s=f"{record['examples_per_s']:.0f}")

    def _plot(self) -> None:
        from .plots import plot_learning_curves

        plot_learning_curves(read_metrics(self.output / METRICS_FILE), self.output / PLOT_FILE,
                             title=self.output.name)

    def _result(self, total: int, finished: bool,
                last_metrics: dict[str, float] | None) -> TrainResult:
        history = read_metrics(self.output / METRICS_FILE) if self.ctx.is_main else []
        best = next((r for r in history if r.get("event") == "eval"
                     and r["step"] == self.state.best_step), None)
        return TrainResult(self.output, self.state.step, total, finished,
                           self.state.stopped_early, self.state.best_step, best, last_metrics,
                           self.state.elapsed, history)


@dataclass
class _Run:
    """What one call of ``Trainer.train`` carries from step to step."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    total: int  # optimizer steps in the whole run
    steps_per_epoch: int
    steps: Iterator[tuple[int, list[np.ndarray], int]]  # Trainer._pending_steps()
    bar: Any  # tqdm progress bar
    start: float  # perf_counter() at which the run would have started, resumes included
    meter: Meter = field(default_factory=Meter)
    step_rng: dict[str, Any] = field(default_factory=ckpt.rng_state)  # before the current step
    last_metrics: dict[str, float] | None = None
