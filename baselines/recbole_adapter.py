"""RecBole's SASRec, BERT4Rec and GRU4Rec on the harness's own leave-one-out split.

One run: the split is exported as RecBole atomic files (prepared once and cached, see
``baselines.recbole_data``), RecBole checks out the same valid/test target for every user (checked
here, user by user), RecBole's own model class trains with early stopping on validation NDCG@10
(``eval_args {split: {LS: valid_and_test}, order: TO, mode: full}``), the best weights are kept in
memory, and ``rank`` returns each user's full-ranking top K mapped back to harness item indices.
RecBole's own valid/test results for the same weights go into the run record (``method_info``)
with the largest difference to the harness evaluator on the same users, which must be <= 1e-4.

Nothing is written to the working directory: RecBole's config comes from a dict (``sys.argv`` is
ignored), no logger is initialised, TensorBoard is stubbed out (``baselines.recbole_compat``), the
checkpoint folder is the run's own ``work_dir`` (and stays empty: weights stay in memory).

Losses (``baseline.loss``): ``ce`` (RecBole's default: softmax over the catalogue), ``bce`` (the
original SASRec/GRU4Rec objective and the one behind the SASRec numbers in the TIGER paper: binary
cross-entropy with one uniformly sampled negative per target), ``bpr`` (RecBole's pairwise option).
BERT4Rec is trained as RecBole defines it (masked-item CE).
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from baselines import recbole_compat
from baselines.recbole_data import RECBOLE_DATA_VERSION, PreparedData, eval_args, prepare, quiet_recbole
from baselines.recbole_models import LOSS_NAMES, ModelSpec, loss_of, training_of
from bench.progress import say
from bench.split import LeaveOneOutSplit

recbole_compat.apply()  # here too, so any process that imports the adapter gets the patches

def model_settings(spec: ModelSpec, section: dict, loss: str, hidden_size: int) -> dict:
    """RecBole model hyper-parameters from a ``baseline``-like config section."""
    settings = dict(section.get(spec.key) or {})
    settings[spec.hidden_size_key] = hidden_size
    settings["loss_type"] = "CE" if loss == "ce" else "BPR"  # BCE reads BPR's sampled negatives
    return settings


def recbole_config_dict(
    spec: ModelSpec, section: dict, loss: str, *, seed: int, ks: Sequence[int], leave_one_mode: str,
    checkpoint_dir: Path, data_path: Path,
) -> dict:
    training = training_of(section)
    valid_metric = training.valid_metric
    metric_k = int(valid_metric.split("@")[1])
    config = {
        "data_path": str(data_path),
        "checkpoint_dir": str(checkpoint_dir),
        "seed": int(seed),
        "reproducibility": True,
        "state": "WARNING",
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "worker": 0,
        "epochs": training.epochs,
        "stopping_step": training.patience,
        "eval_step": training.eval_step,
        "train_batch_size": training.train_batch_size,
        "eval_batch_size": training.eval_batch_size,
        "learner": "adam",
        "learning_rate": training.learning_rate,
        "weight_decay": training.weight_decay,
        "train_neg_sample_args": None if loss == "ce" else {"distribution": "uniform", "sample_num": 1},
        "eval_args": eval_args(leave_one_mode),
        "repeatable": True,
        "metrics": ["Recall", "NDCG"],
        "topk": sorted({int(k) for k in ks} | {metric_k}),
        "valid_metric": valid_metric,
        "metric_decimal_place": 12,
    }
    config.update(model_settings(spec, section, loss, training.hidden_size))
    config.update(training.recbole)
    return config


def _bce_loss(model, interaction):
    """Binary cross-entropy with one sampled negative per target (SASRec paper, Kang & McAuley 2018)."""
    import torch.nn.functional as F

    seq_output = model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
    pos = model.item_embedding(interaction[model.POS_ITEM_ID])
    neg = model.item_embedding(interaction[model.NEG_ITEM_ID])
    pos_logit = (seq_output * pos).sum(-1)
    neg_logit = (seq_output * neg).sum(-1)
    return F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean()


def model_class(spec: ModelSpec, loss: str):
    from recbole.utils import get_model

    base = get_model(spec.recbole_name)
    if loss != "bce":
        return base
    return type(f"{spec.recbole_name}BCE", (base,), {"calculate_loss": _bce_loss})


def _make_trainer_class():
    from recbole.trainer import Trainer

    class InMemoryTrainer(Trainer):
        """RecBole's Trainer, but the best weights are kept in memory instead of written to disk."""

        best_state: dict | None = None
        best_epoch: int | None = None

        def _save_checkpoint(self, epoch, verbose=True, **kwargs):
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_epoch = int(epoch)

        def restore_best(self) -> None:
            if self.best_state is not None:
                self.model.load_state_dict(self.best_state)

    return InMemoryTrainer


@dataclass
class TrainedModel:
    data: PreparedData
    rb_config: object
    loaders: dict  # stage -> RecBole dataloader ('train', 'valid' and, where there is one, 'test')
    model: object
    trainer: object
    info: dict = field(default_factory=dict)

    def full_rankings(self, stage: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(harness users, top-k harness items) per row of the ``stage`` loader, best first.

        Scores come from the trainer's own full-sort evaluation (the same batches, the same
        masking of the padding id) so they are exactly the scores RecBole's evaluator ranks.
        Why the private ``Trainer._full_sort_batch_eval``: RecBole 1.2.0 has no public call that
        returns per-user full-catalogue scores (``Trainer.evaluate`` returns only averaged
        metrics), and re-implementing its history masking would be a second copy that can drift.
        RecBole is pinned (``recbole==1.2.0``), and every run compares the harness's metrics on
        these rankings with RecBole's own to 1e-4 and fails if they differ, so a change in that
        private method cannot go unnoticed.
        """
        import torch

        loader = self.loaders[stage]
        trainer = self.trainer
        self.model.eval()
        trainer.tot_item_num = loader._dataset.item_num
        if trainer.item_tensor is None:
            trainer.item_tensor = loader._dataset.get_item_feature().to(trainer.device)
        k_eff = min(k, trainer.tot_item_num - 1)
        users, tops = [], []
        with torch.no_grad(), quiet_recbole():
            for batch in loader:
                interaction, scores, _, _ = trainer._full_sort_batch_eval(batch)
                _, top = torch.topk(scores, k_eff, dim=-1)
                users.append(self.data.user_to_harness[interaction[self.data.dataset.uid_field].cpu().numpy()])
                tops.append(self.data.item_to_harness[top.cpu().numpy()])
        users = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
        tops = np.concatenate(tops) if tops else np.zeros((0, k_eff), dtype=np.int64)
        if k_eff < k:
            tops = np.concatenate([tops, np.full((len(tops), k - k_eff), -1, dtype=np.int64)], axis=1)
        return users, tops

    def evaluate(self, stage: str) -> dict:
        """RecBole's own metrics for the current weights on ``stage``."""
        with quiet_recbole():
            result = self.trainer.evaluate(self.loaders[stage], load_best_model=False)
        return {key: float(value) for key, value in result.items()}


def train_sequential(
    spec: ModelSpec,
    section: dict,
    sequences: Sequence[np.ndarray],
    n_items: int,
    *,
    seed: int,
    ks: Sequence[int],
    device: str,
    work_dir: Path,
    leave_one_mode: str = "valid_and_test",
    split: LeaveOneOutSplit | None = None,
    report: Callable[[int, dict], None] | None = None,
    label: str | None = None,
    check: Callable[[PreparedData], None] | None = None,
    scalars: Callable[[int, dict], None] | None = None,
) -> TrainedModel:
    """Prepare (or load) RecBole's data for ``sequences``, train ``spec``'s model, keep the best weights."""
    from recbole.data.utils import create_samplers, get_dataloader
    from recbole.utils import init_seed

    loss = loss_of(spec, section)
    label = label or f"{spec.display} ({LOSS_NAMES[loss]})"
    training = training_of(section)
    verbose = training.verbose
    work_dir = Path(work_dir)
    started = time.perf_counter()
    say(f"[{label}] RecBole data (max history {training.max_seq_len}, leave-one-out {leave_one_mode})")
    data = prepare(
        sequences, n_items, max_seq_len=training.max_seq_len, leave_one_mode=leave_one_mode,
        split=split, use_cache=training.cache_dataset, scratch_dir=work_dir / "recbole_data",
    )
    if check is not None:
        check(data)
    prepare_seconds = time.perf_counter() - started

    rb_dict = recbole_config_dict(
        spec, section, loss, seed=seed, ks=ks, leave_one_mode=leave_one_mode,
        checkpoint_dir=work_dir / "recbole", data_path=data.folder.parent,
    )
    rb_config = recbole_compat.make_config(spec.recbole_name, data.name, rb_dict, device=device)
    data.set_config(rb_config)
    init_seed(int(seed), True)
    stages = ("train", "valid", "test") if leave_one_mode == "valid_and_test" else ("train", "valid")
    built = dict(zip(("train", "valid", "test"), data.parts))
    samplers = dict(zip(("train", "valid", "test"), create_samplers(rb_config, data.dataset, data.parts)))
    loaders = {
        stage: get_dataloader(rb_config, stage)(rb_config, built[stage], samplers[stage], shuffle=(stage == "train"))
        for stage in stages
    }
    init_seed(int(seed), True)
    model = model_class(spec, loss)(rb_config, loaders["train"]._dataset).to(rb_config["device"])
    trainer = _make_trainer_class()(rb_config, model)

    curve: list[dict] = []
    clock = {"last": time.perf_counter()}

    def on_validation(epoch: int, valid_score: float) -> None:
        now = time.perf_counter()
        train_loss = trainer.train_loss_dict.get(epoch)
        curve.append({"epoch": epoch, "valid_score": float(valid_score),
                      "train_loss": None if train_loss is None else float(train_loss),
                      "seconds": round(now - clock["last"], 2)})
        if verbose:
            best = trainer.best_valid_score
            print(f"[{label}] epoch {epoch}: loss {train_loss:.4f}, valid {rb_config['valid_metric']} "
                  f"{valid_score:.4f} (best {best:.4f} @ {trainer.best_epoch}), {now - clock['last']:.1f}s",
                  file=sys.stderr, flush=True)
        clock["last"] = now
        if scalars is not None:  # the same tags as TIGER's, per epoch (bench.tracking)
            scalars(epoch, {**({} if train_loss is None else {"train/loss": float(train_loss)}),
                            f"valid/{rb_config['valid_metric'].lower()}": float(valid_score)})
        if report is not None:
            report(epoch, {f"valid_{rb_config['valid_metric'].lower()}": float(valid_score)})

    say(f"[{label}] training up to {int(rb_dict['epochs'])} epochs ({len(loaders['train'])} steps each), "
        f"early stopping on validation {rb_config['valid_metric']}"
        + ("" if verbose else "; baseline.verbose=true prints every epoch"))
    with quiet_recbole():
        trainer.fit(loaders["train"], loaders["valid"], verbose=False, saved=True, callback_fn=on_validation)
    trainer.restore_best()
    train_seconds = time.perf_counter() - started - prepare_seconds
    epochs_run = len(trainer.train_loss_dict)
    steps_per_epoch = len(loaders["train"])
    examples_per_epoch = len(loaders["train"]._dataset)

    info = {
        "recbole_model": spec.recbole_name,
        "loss": loss,
        "label": label,
        "recbole_config": {k: v for k, v in rb_dict.items() if k not in ("data_path", "checkpoint_dir")},
        "dataset_cache": {"key": data.key, "hit": data.cache_hit, "folder": str(data.folder)},
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "best_epoch": trainer.best_epoch,
        "epochs_run": epochs_run,
        "steps_per_epoch": steps_per_epoch,
        "train_examples_per_epoch": examples_per_epoch,
        "stop_reason": "early stopping" if epochs_run < int(rb_dict["epochs"]) else "max epochs",
        "best_valid_score": float(trainer.best_valid_score),
        "valid_curve": curve,
        "prepare_seconds": round(prepare_seconds, 2),
        "train_seconds": round(train_seconds, 2),
    }
    return TrainedModel(data, rb_config, loaders, model, trainer, info)


def check_targets(data: PreparedData, split: LeaveOneOutSplit) -> None:
    """RecBole's valid and test targets must be the harness's, for every user exactly once."""
    for part, stage in ((1, "valid"), (2, "test")):
        users, items = data.targets(part)
        expected = split.targets(stage)
        counts = np.bincount(users[users >= 0], minlength=split.n_users)
        if len(users) != split.n_users or (users < 0).any() or (counts != 1).any():
            raise RuntimeError(
                f"RecBole's {stage} set does not hold every harness user exactly once "
                f"({len(users)} rows for {split.n_users} users)"
            )
        wrong = np.flatnonzero(items != expected[users])
        if len(wrong):
            user = int(users[wrong[0]])
            raise RuntimeError(
                f"RecBole's {stage} target differs from the harness's for {len(wrong)} users "
                f"(first: user {user}: RecBole {items[wrong[0]]}, harness {expected[user]})"
            )
