"""Training loop of the generative recommender.

Loss: cross-entropy of the next item's semantic-ID tokens on ``logits / tau`` (LETTER's
ranking-guided generation loss; ``tau = 1`` is TIGER's loss). AdamW (or Adafactor), learning rate
held (or ramped) for ``warmup_steps`` then inverse-square-root decay (TIGER: 0.01, 10k steps), batches
grouped by history length and padded only to their longest history, validation NDCG@10 every
``eval_every`` steps with early stopping and a restore of the best weights, a tqdm bar with the
loss and the validation metric, checkpoints in the run's work folder, and resume.

Checkpoints (``train.checkpoint: true``), written atomically after every validation:
  - ``<work_dir>/checkpoint.pt``: everything needed to resume (model, optimizer, scaler, step,
    epoch and batch position, best weights and score, curve, and a fingerprint of the data,
    semantic IDs and model shape that a resume must match);
  - ``<work_dir>/best.pt``: the best weights so far.
Resume: ``train.resume_from`` = such a ``checkpoint.pt`` or the folder holding it. Training goes on
from the saved step with the same batch order and random streams (``train.time_limit_min`` counts per session). A
checkpoint whose training had finished restores its best weights, unless it stopped at its step or
time limit and the config now allows more steps: then training goes on.
"""
from __future__ import annotations

import math
import os
import pickle
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.atomic import atomic_write
from bench.config_schema import Train
from bench.device import cpu_has_bf16
from bench.errors import UserError, first_line
from bench.identity import ADDED_LATER
from recommenders.model import TigerModel
from recommenders.vocab import SemanticIdVocab

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


class ResumeError(UserError, ValueError):
    """A checkpoint that cannot be resumed from (missing, or made for other data / IDs / model)."""


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device``: bf16 on CUDA or on a CPU with native bf16
    (AVX512-BF16/AMX), fp16 on CUDA only; otherwise float32 (None) with a warning saying why."""
    if amp == "none":
        return None
    if device.type == "cuda":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    if amp == "bf16" and cpu_has_bf16():
        return torch.bfloat16
    why = "fp16 autocast is for CUDA" if amp == "fp16" else "this CPU has no native bfloat16 (avx512_bf16/amx_bf16)"
    print(f"warning: train.amp={amp} ignored ({why}); training in float32", file=sys.stderr)
    return None


def tau_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Mean cross-entropy of ``softmax(logits / tau)`` at ``targets`` (LETTER's ranking-guided loss)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]) / tau, targets.reshape(-1))


def learning_rate(step: int, cfg: Train) -> float:
    """Learning rate at (0-based) ``step``.

    ``schedule``: ``constant``; ``inverse_sqrt`` (TIGER/T5X: ``lr`` for ``warmup_steps`` then
    ``lr * sqrt(warmup_steps / step)``); ``cosine`` (to 0 at ``max_steps``). ``warmup``: ``constant``
    holds ``lr`` during the warm-up (TIGER's wording), ``linear`` ramps up to it.
    """
    base, warmup = cfg.lr, cfg.warmup_steps
    step = step + 1
    factor = 1.0
    if warmup and step <= warmup and cfg.warmup == "linear":
        factor = step / warmup
    schedule = cfg.schedule
    if schedule == "inverse_sqrt":
        if step > max(warmup, 1):
            factor *= math.sqrt(max(warmup, 1) / step)
    elif schedule == "cosine":
        total = cfg.max_steps or 0
        if total and step > warmup:
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            factor *= 0.5 * (1 + math.cos(math.pi * progress))
    return base * factor  # constant: the warm-up factor only (train.schedule is checked by the config schema)


def make_optimizer(model: torch.nn.Module, cfg: Train) -> torch.optim.Optimizer:
    decay = cfg.weight_decay
    # no weight decay on norms and the relative-position biases
    params_decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "bias.embedding" not in n]
    params_rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "bias.embedding" not in n)]
    groups = [{"params": params_decay, "weight_decay": decay}, {"params": params_rest, "weight_decay": 0.0}]
    if cfg.optimizer == "adafactor":  # or adamw: the schema's two values
        return torch.optim.Adafactor(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


@dataclass
class TrainExamples:
    """Training examples as arrays: histories ``[n, H]`` left-padded with -1, their lengths, user tokens, targets."""

    items: np.ndarray
    lengths: np.ndarray
    user_tokens: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device) -> "TrainExamples":
        """The same examples as tensors on ``device`` (batches are gathered there)."""
        return TrainExamples(*(torch.as_tensor(a).to(device) for a in (self.items, self.lengths, self.user_tokens, self.targets)))


def epoch_batches(examples: TrainExamples, batch_size: int, seed: int, epoch: int, group_by_length: bool):
    """The batches (index arrays) of one epoch; deterministic in (seed, epoch).

    With ``group_by_length``, examples are shuffled, then sorted by history length inside windows of
    50 batches, cut into batches, and the batches shuffled: batches hold similar lengths, so dynamic
    padding wastes little, while the order stays random.
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(len(examples))
    if group_by_length:
        window = batch_size * 50
        for start in range(0, len(order), window):
            chunk = order[start:start + window]
            order[start:start + window] = chunk[np.argsort(examples.lengths[chunk], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _atomic_save(obj, path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle), fsync=False)


def random_state(device: torch.device) -> dict:
    """Torch's random streams (dropout draws): saved with a checkpoint so that a resumed training
    takes the same steps as one that was never interrupted."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_random_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint's contents, read with ``weights_only=True``: tensors and plain data only, so a
    crafted file cannot run code (work folders may sit on storage others can write)."""
    path = resolve_checkpoint(path)
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ResumeError(f"refused to read checkpoint {path}: it holds objects other than tensors and plain "
                          f"data, and loading them could run code ({first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise ResumeError(f"cannot read checkpoint {path}: {first_line(err)}") from None
    if not isinstance(ckpt, dict):
        raise ResumeError(f"{path} is not a checkpoint of this harness (it holds a {type(ckpt).__name__})")
    return ckpt


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The optimizer step a checkpoint (or the folder holding it) was saved at; None if unreadable."""
    try:
        return int(read_checkpoint(path)["state"]["step"])
    except Exception:  # noqa: BLE001 - an estimate only: the resume itself reports a bad checkpoint
        return None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ResumeError(f"train.resume_from: no checkpoint at {path} (give a {CHECKPOINT} or the folder holding it)")
    return path


def differences(saved, current, limit: int = 6) -> str:
    """What differs between two flat dicts, as ``key: old -> new`` (at most ``limit`` keys shown)."""
    saved, current = saved if isinstance(saved, dict) else {}, current if isinstance(current, dict) else {}
    keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_format(ckpt: dict, path) -> None:
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(f"{path} has checkpoint format {ckpt.get('format')!r}; this code reads format "
                          f"{CHECKPOINT_FORMAT} only (start a new run instead of resuming)")


def check_training_config(saved: dict, current: dict, path) -> None:
    """A resume must be trained by the settings its checkpoint was: name the ones that differ (a key
    added since the checkpoint was written counts at its old behaviour, bench.identity.ADDED_LATER)."""
    saved = {**{key: value for key, value in ADDED_LATER.items() if key in current}, **saved}
    if saved != current:
        raise ResumeError(
            f"{path} was trained with other settings ({differences(saved, current)}); a resume may change only "
            "the budget, process and test-decoding settings (recommenders.tiger.RESUME_MAY_CHANGE)"
        )


# bump when the checkpoint layout or what resuming restores changes: an older checkpoint is refused
CHECKPOINT_FORMAT = 2


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float = -1.0
    best_step: int = 0
    evals_since_best: int = 0
    finished: bool = False
    stop_reason: str = ""
    curve: list = field(default_factory=list)
    train_seconds: float = 0.0
    examples_seen: int = 0


class Trainer:
    def __init__(
        self,
        model: TigerModel,
        vocab: SemanticIdVocab,
        cfg: "Train | dict",
        device: str,
        work_dir: Path,
        evaluate: Callable[[TigerModel], float],
        report: Callable[[int, dict], None] = lambda step, metrics: None,
        seed: int = 0,
        fingerprint: dict | None = None,
        scalars: Callable[[int, dict], None] | None = None,
    ):
        # the train section, typed: what the trainer reads (a plain dict is checked here by the same schema)
        self.model, self.vocab, self.cfg = model, vocab, cfg if isinstance(cfg, Train) else Train.model_validate(cfg)
        cfg = self.cfg
        self.device = torch.device(device)
        self.work_dir = Path(work_dir)
        self.evaluate, self.report = evaluate, report
        self.scalars = scalars or (lambda step, values: None)  # TensorBoard etc. (bench.tracking)
        self.seed = int(seed)
        self.fingerprint = fingerprint or {}
        self.tau = cfg.tau
        self.optimizer = make_optimizer(model, cfg)
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        self.best_weights = None
        self.resumed_from: str | None = None
        self.training_config_checked: bool | None = None  # set by a resume: False for an older checkpoint
        self._clock = time.perf_counter()
        self._running: list[float] = []  # mean losses of the log intervals since the last validation

    # --- checkpoints ---------------------------------------------------------------------------
    def _checkpoint(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": self.state.__dict__,
            "best_weights": self.best_weights,
            "fingerprint": self.fingerprint,
            "model_config": self.model.cfg.to_dict(),
            "rng": random_state(self.device),
        }

    def save(self) -> None:
        if not self.cfg.checkpoint:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        _atomic_save(self._checkpoint(), self.work_dir / CHECKPOINT)
        if self.best_weights is not None:
            _atomic_save({"model": self.best_weights, "model_config": self.model.cfg.to_dict(),
                          "fingerprint": self.fingerprint, "step": self.state.best_step}, self.work_dir / BEST)

    def load(self, path: str | os.PathLike) -> None:
        path = resolve_checkpoint(path)
        ckpt = read_checkpoint(path, map_location=self.device)
        check_format(ckpt, path)
        saved_model = {"arch": "encoder_decoder", **(ckpt.get("model_config") or {})}  # before model.arch existed
        if saved_model != self.model.cfg.to_dict():
            raise ResumeError(f"{path} was made for another model shape ({differences(saved_model, self.model.cfg.to_dict())})")
        saved = ckpt.get("fingerprint", {})
        self.training_config_checked = "training_config" in saved or "training_config" not in self.fingerprint
        if not self.training_config_checked:  # checkpoints written before they carried it
            print(f"warning: {path} does not say which settings trained it; resuming without checking them "
                  "(the record says so: method_info.training.training_config_checked = false)", file=sys.stderr)
        for key, value in self.fingerprint.items():
            if key == "training_config" and key in saved:
                check_training_config(saved[key], value, path)
            if key != "training_config" and saved.get(key) != value:
                raise ResumeError(
                    f"{path} was made for different {key} ({saved.get(key)!r} != {value!r}); "
                    "resume needs the same dataset, semantic IDs and model"
                )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        self.best_weights = ckpt.get("best_weights")
        if ckpt.get("rng") is not None:  # older checkpoints: dropout draws differ after the resume
            set_random_state(ckpt["rng"], self.device)
        self.resumed_from = str(path)

    # --- training ------------------------------------------------------------------------------
    def _limits(self, steps_per_epoch: int) -> int:
        max_steps, max_epochs = self.cfg.max_steps, self.cfg.max_epochs
        limits = [max_steps] if max_steps is not None else []
        if max_epochs is not None:
            limits.append(max_epochs * steps_per_epoch)
        return min(limits)  # one of them is set (checked by the config schema)

    def _budget_reason(self, steps_per_epoch: int) -> str:
        """Which budget ended training: "max steps" or "max epochs" (the smaller of the two)."""
        max_steps, max_epochs = self.cfg.max_steps, self.cfg.max_epochs
        if max_epochs is not None and (max_steps is None or max_epochs * steps_per_epoch <= max_steps):
            return "max epochs"
        return "max steps"

    def _validate(self, running_loss: float) -> bool:
        """Evaluate, record, report, checkpoint; True when early stopping says stop."""
        self.model.eval()
        score = float(self.evaluate(self.model))
        self.model.train()
        st = self.state
        improved = score > st.best_score
        if improved:
            st.best_score, st.best_step, st.evals_since_best = score, st.step, 0
            self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st.evals_since_best += 1
        st.curve.append({
            "step": st.step, "epoch": st.epoch, "loss": round(running_loss, 5), "valid_ndcg@10": round(score, 5),
            "lr": learning_rate(max(st.step - 1, 0), self.cfg), "seconds": round(self.elapsed(), 1),
        })
        self.report(st.step, {"valid_ndcg@10": score, "loss": running_loss})
        self.scalars(st.step, {"valid/ndcg@10": score, "valid/best_ndcg@10": st.best_score})
        patience = self.cfg.patience
        return patience is not None and st.evals_since_best >= patience

    def elapsed(self) -> float:
        """Training seconds, over all sessions of this training (resumes included)."""
        return self.state.train_seconds + time.perf_counter() - self._clock

    def _flush_time(self) -> None:
        now = time.perf_counter()
        self.state.train_seconds += now - self._clock
        self._clock = now

    def fit(self, examples: TrainExamples) -> TrainState:
        cfg, st = self.cfg, self.state
        if cfg.resume_from:
            self.load(cfg.resume_from)
            st = self.state
        batch_size = cfg.batch_size
        steps_per_epoch = math.ceil(len(examples) / batch_size)
        total = self._limits(steps_per_epoch)
        eval_every = cfg.eval_every if cfg.eval_every is not None else steps_per_epoch
        time_limit = cfg.time_limit_min * 60 if cfg.time_limit_min is not None else None
        grad_clip = cfg.grad_clip or 0.0
        group = cfg.group_by_length
        if st.finished and st.stop_reason in ("max steps", "max epochs", "time limit") and st.step < total:
            st.finished, st.stop_reason = False, ""  # a larger budget than the checkpoint's: go on
        if st.finished or st.step >= total:
            st.finished = True
            self._restore_best()
            return st

        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=st.step, desc="train TIGER", disable=not cfg.progress,
                   dynamic_ncols=True, mininterval=2.0, file=sys.stderr)
        data = examples.to(self.device)
        self.model.train()
        self._clock = session_start = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        loss_count, smooth, stop = 0, None, False
        seen_at, logged_at = st.examples_seen, time.perf_counter()
        log_every = 20
        try:
            while not stop:
                batches = epoch_batches(examples, batch_size, self.seed, st.epoch, group)
                while st.batch_in_epoch < len(batches):
                    if (time_limit is not None and time.perf_counter() - session_start >= time_limit
                            and st.curve and st.curve[-1]["step"] == st.step):
                        # the time ran out right after a validation: stop on it rather than step and validate again
                        stop, st.finished, st.stop_reason = True, True, "time limit"
                        self._flush_time()
                        self.save()
                        break
                    index = batches[st.batch_in_epoch]
                    loss = self._step(data, index, int(examples.lengths[index].max()), grad_clip)
                    loss_sum += loss
                    st.batch_in_epoch += 1
                    st.step += 1
                    st.examples_seen += len(index)
                    loss_count += 1
                    bar.update(1)
                    last = st.step >= total
                    out_of_time = time_limit is not None and time.perf_counter() - session_start >= time_limit
                    validate = st.step % eval_every == 0 or last or out_of_time
                    if st.step % log_every == 0 or validate:
                        mean_loss = float(loss_sum) / loss_count  # one device sync per log interval
                        if not math.isfinite(mean_loss):
                            raise FloatingPointError(
                                f"training loss became {mean_loss} by step {st.step}; lower train.lr"
                            )
                        smooth = mean_loss if smooth is None else 0.7 * smooth + 0.3 * mean_loss
                        now = time.perf_counter()
                        self.scalars(st.step, {"train/loss": mean_loss, "train/lr": learning_rate(st.step - 1, cfg),
                                               "train/examples_per_s": (st.examples_seen - seen_at) / max(now - logged_at, 1e-9)})
                        seen_at, logged_at = st.examples_seen, now
                        if not validate:
                            loss_sum.zero_()
                            loss_count = 0
                            self._running.append(mean_loss)
                        bar.set_postfix(loss=f"{smooth:.3f}", best_ndcg10=f"{max(st.best_score, 0):.4f}", refresh=False)
                    if validate:
                        self._running.append(mean_loss)
                        interval_loss = float(np.mean(self._running))
                        self._running = []
                        loss_sum.zero_()
                        loss_count = 0
                        if self._validate(interval_loss):
                            stop, st.stop_reason = True, "early stopping"
                        if last and not stop:
                            stop, st.stop_reason = True, self._budget_reason(steps_per_epoch)
                        if out_of_time and not stop:
                            stop, st.stop_reason = True, "time limit"
                        st.finished = stop
                        bar.set_postfix(loss=f"{smooth:.3f}", best_ndcg10=f"{max(st.best_score, 0):.4f}")
                        self._flush_time()
                        self.save()
                        if stop:
                            break
                if not stop:
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        except KeyboardInterrupt:
            self._flush_time()
            self.save()
            bar.close()
            raise
        bar.close()
        self._restore_best()
        return st

    def _restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        self.model.eval()

    def _step(self, data: "TrainExamples", index: np.ndarray, width: int, grad_clip: float) -> torch.Tensor:
        vocab, device = self.vocab, self.device
        index = torch.from_numpy(index).to(device, non_blocking=True)
        input_ids = vocab.encoder_inputs(data.items[index], data.lengths[index], data.user_tokens[index], width=width)
        targets = vocab.target_tokens(data.targets[index])
        decoder_ids = vocab.decoder_inputs(targets)
        lr = learning_rate(self.state.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            if self.cfg.loss_positions == "all":  # the decoder-only model: every item after the first
                logits, targets = self.model.all_positions(input_ids, decoder_ids, targets, vocab.user_offset)
            else:
                logits = self.model(input_ids, decoder_ids)
        loss = tau_cross_entropy(logits, targets, self.tau)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()
