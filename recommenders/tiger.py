"""TIGER as a harness method: item text embeddings -> tokenizer -> semantic IDs -> encoder-decoder
training -> trie-constrained beam search rankings.

Config sections: ``model`` (architecture), ``train`` (loss, optimisation, validation, checkpoints,
resume), ``decode`` (beam search, invalid-ID rate, sampling diversity); see
``bench/configs/defaults/model.yaml``. The tokenizer is ``config.tokenizer.name``.
"""
from __future__ import annotations

import hashlib
import sys

import numpy as np
import torch

from bench.atomic import is_running
from bench.config import ConfigError, flatten
from bench.config_schema import RunConfig, keys_with_role
from bench.device import resolve_threads
from bench.methods import Recommender, RunContext
from bench.metrics import category_entropy, evaluate_rankings
from bench.split import HistoryBatch, LeaveOneOutSplit
from bench.tracking import open_tracker, track_tokenizer_fit
from recommenders.decoding import (
    SemanticIdTrie,
    beam_search,
    distinct_top_k,
    invalid_rate,
    item_categories,
    sample_decode,
)
from recommenders.architectures import build_model, uses_separators
from recommenders.model import TigerModel, TigerModelConfig
from recommenders.trainer import (
    CHECKPOINT_FORMAT, ResumeError, Trainer, TrainExamples, check_format, check_training_config, differences,
    read_checkpoint, resolve_checkpoint,
)
from recommenders.vocab import SemanticIdVocab
from bench import embed
from recommenders.item_ids import fit_item_ids
import tokenizers_zoo


def _sha(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.shape}{array.dtype}".encode() + array.tobytes()).hexdigest()[:16]


def _mix(candidates: list, cap: int, k: int) -> list[int]:
    """The first ``k`` items of sorted ``(-score, is_unseen, beam, item)`` candidates, at most ``cap``
    of them unseen."""
    chosen, n_unseen = [], 0
    for _, is_unseen, _, item in candidates:
        if is_unseen and n_unseen >= cap:
            continue
        chosen.append(item)
        n_unseen += is_unseen
        if len(chosen) == k:
            break
    return chosen


def _summarise_curve(curve: list[dict], max_points: int = 60) -> list[dict]:
    if len(curve) <= max_points:
        return curve
    keep = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
    return [curve[i] for i in keep]


# settings a resumed training may change: its budget (a checkpoint goes on to more steps), how the
# process runs, and what happens after training (test decoding, metrics, cold-start mixing);
# everything else must equal the checkpoint's, or the record would name settings that did not train it
RESUME_MAY_CHANGE = keys_with_role("may_change_on_resume")  # declared on the schema (bench.config_schema)


def training_config(config: RunConfig) -> dict:
    """The settings that shape a training (flat dotted keys, plain values): a checkpoint carries them
    and a resume must match them (validation decoding, ``decode.beam_size``, included: it picks the
    best weights)."""
    return flatten(config.to_record(), RESUME_MAY_CHANGE)


# bump when a change to the decoder-only model or its all-positions loss changes numbers
DECODER_ONLY_VERSION = 1
ARCH_LABELS = {"encoder_decoder": "TIGER", "decoder_only": "TIGER-dec"}


def latest_per_user(examples: HistoryBatch) -> HistoryBatch:
    """Each user's example with the latest target (its history the longest window before it)."""
    order = np.lexsort((np.arange(len(examples.users)), examples.users))
    last = order[np.r_[examples.users[order][1:] != examples.users[order][:-1], True]]
    return HistoryBatch(examples.items[last], examples.lengths[last], examples.users[last], examples.targets[last])


class TigerRecommender(Recommender):
    """The generative recommender; ``fit`` tokenizes items, trains, ``rank`` decodes."""

    version = 1  # bump when a change to the model, loss, trainer or decoding changes numbers

    def __init__(self, config: RunConfig, context: RunContext):
        super().__init__(config, context)
        # the sections the model reads (typed by bench.config_schema)
        self.model_cfg, self.train_cfg, self.decode_cfg = config.model, config.train, config.decode
        self.device = torch.device(context.device)
        self.model: TigerModel | None = None
        self._rankings: dict = {}

    @classmethod
    def label(cls, config: RunConfig) -> str:
        """The tokenizer (and the no-user ablation). ``train.tau`` is a setting of the method like its
        layers: tables tell tau values apart as configurations and pick one on validation."""
        parts = [config.tokenizer.name]
        if config.model.user_buckets == 0:
            parts.append("no-user")
        return f"{ARCH_LABELS[config.model.arch]}[{','.join(parts)}]"

    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        if config.train.loss_positions == "all" and config.model.arch != "decoder_only":
            raise ConfigError("train.loss_positions=all needs model.arch=decoder_only (the encoder-decoder "
                              "reads each prefix as its own example)")

    @classmethod
    def components(cls, config: RunConfig) -> dict[str, int]:
        klass, uses_text, needs_cf = tokenizers_zoo.tokenizer_inputs(config)
        versions = {**super().components(config), "tiger_checkpoint": CHECKPOINT_FORMAT,
                    **klass.component_versions()}
        if config.model.arch == "decoder_only":
            versions["tiger_decoder_only"] = DECODER_ONLY_VERSION
        if uses_text:
            versions["embedder"] = embed.EMBEDDER_VERSION
        if needs_cf:
            # defer: RecBole (seconds to import), only for a tokenizer that uses CF embeddings
            from baselines.cf_embed import component_versions as cf_versions

            versions.update(cf_versions())
        return versions

    @classmethod
    def preflight(cls, config: RunConfig) -> None:
        """A resume's checkpoint is read and matched against ``config`` first (format, training
        settings, code versions), so a wrong ``--resume`` fails in a second with the differing keys,
        not after the data, embeddings and tokenizer have loaded; one a live run holds is refused."""
        resume = config.train.resume_from
        if not resume:
            return
        path = resolve_checkpoint(resume)
        if is_running(path.parent):
            raise ResumeError(f"{path.parent} belongs to a run that is still going (its process holds the lock); "
                              "wait for it to end or stop it before resuming from its checkpoint")
        ckpt = read_checkpoint(path)
        check_format(ckpt, path)
        saved = ckpt.get("fingerprint") if isinstance(ckpt.get("fingerprint"), dict) else {}
        if "training_config" in saved:
            check_training_config(saved["training_config"], training_config(config), path)
        components = cls.components(config)
        if saved.get("components") is not None and saved["components"] != components:
            raise ResumeError(f"{path} was made by other code ({differences(saved['components'], components)}); "
                              "start a new run instead of resuming")

    def budget(self) -> dict:
        training = self.context.extras.get("training", {})
        return {
            "optimizer_steps": training.get("steps"),
            "epochs": training.get("epochs"),
            "examples_seen": training.get("examples_seen"),
            "train_seconds": training.get("train_seconds"),
            "stop_reason": training.get("stop_reason"),
            "best_step": training.get("best_step"),
        }

    # --- fit ------------------------------------------------------------------------------------
    def fit(self, split: LeaveOneOutSplit) -> None:
        sids, sizes, info = self.tokenize(split)
        self.fit_semantic_ids(split, sids, sizes, info)

    def tokenize(self, split: LeaveOneOutSplit):
        """Semantic IDs ``[n_items, L+1]``, codebook sizes, and tokenizer facts for the run record."""
        stage = fit_item_ids(self.config, split, work_dir=self.context.work_dir, unseen=self.context.unseen_items)
        tokenizer = stage.tokenizer
        facts = stage.facts
        stats = tokenizer.stats()
        tracker = open_tracker(self.config, self.context.work_dir)
        try:
            track_tokenizer_fit(tracker, tokenizer.name, tokenizer.info, stats)
        finally:
            tracker.close()
        info = {
            "name": tokenizer.name,
            "stats": stats,
            "from_cache": facts["from_cache"],
            "cache_folder": facts["saved_to"] or facts["loaded_from"],
            "cf_embeddings": facts["cf_embeddings"],
            "timings": facts["timings"],
        }
        return np.asarray(tokenizer.semantic_ids()), list(tokenizer.codebook_sizes), info

    def fit_semantic_ids(self, split: LeaveOneOutSplit, semantic_ids, codebook_sizes, tokenizer_info=None) -> None:
        """Train on given semantic IDs (``fit`` without the tokenizer: tests and tokenizer studies use it)."""
        cfg, tcfg = self.config, self.train_cfg
        threads = resolve_threads(tcfg.num_threads)
        if threads is not None:
            torch.set_num_threads(threads)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        seed = cfg.seed if tcfg.seed is None else tcfg.seed
        self.vocab = SemanticIdVocab(semantic_ids, codebook_sizes, self.model_cfg.user_buckets,
                                     separators=uses_separators(self.model_cfg.arch)).to(self.device)
        self.trie = SemanticIdTrie(self.vocab.semantic_ids, self.vocab.codebook_sizes, self.device)
        # cold-start protocol: plain decoding only ever reaches the items seen in training
        unseen = self.context.unseen_items
        self.seen_index = None
        self.decode_trie = self.trie
        if unseen is not None and len(unseen):
            self.seen_index = np.setdiff1d(np.arange(len(semantic_ids)), unseen)
            self.decode_trie = SemanticIdTrie(np.asarray(semantic_ids)[self.seen_index], self.vocab.codebook_sizes,
                                              self.device)
        self.user_tokens = self.vocab.user_tokens(split.dataset.user_ids)
        torch.manual_seed(seed)
        self.model = build_model(TigerModelConfig.from_config(self.model_cfg, self.vocab.vocab_size)).to(self.device)

        train = split.train_examples
        if tcfg.loss_positions == "all":  # one example per user, its latest window: every item in it is a target
            train = latest_per_user(train)
        examples = TrainExamples(train.items, train.lengths, self.user_tokens[train.users], train.targets)
        valid = split.eval_batch("valid")
        n_valid = tcfg.valid_users
        if n_valid and int(n_valid) < split.n_users:
            keep = np.sort(np.random.default_rng(seed).choice(split.n_users, int(n_valid), replace=False))
            valid = HistoryBatch(valid.items[keep], valid.lengths[keep], valid.users[keep], valid.targets[keep])

        def evaluate(model: TigerModel) -> float:
            ranked, _ = self.decode_batch(valid, 10, constrained=True)
            return evaluate_rankings(ranked, valid.targets, ks=(10,))["ndcg@10"]

        fingerprint = {
            "dataset": split.fingerprint["sha256"],
            "semantic_ids": _sha(self.vocab.semantic_ids),
            "codebook_sizes": self.vocab.codebook_sizes,
            "user_buckets": self.vocab.user_buckets,
            "components": self.components(cfg),
            "training_config": training_config(cfg),
        }
        tracker = open_tracker(cfg, self.context.work_dir)
        self.trainer = Trainer(
            self.model, self.vocab, tcfg, str(self.device), self.context.work_dir, evaluate,
            report=self.context.report, seed=seed, fingerprint=fingerprint, scalars=tracker.scalars,
        )
        try:
            state = self.trainer.fit(examples)
        finally:
            tracker.close()
        self.model.eval()

        curve = state.curve
        extras = self.context.extras
        if tokenizer_info is not None:
            extras["tokenizer"] = tokenizer_info
        extras["semantic_ids"] = {**self.vocab.describe(), "sha": fingerprint["semantic_ids"],
                                  "trie_max_branching": self.trie.max_branching()}
        extras["model"] = {"parameters": self.model.num_parameters(), **self.model.cfg.to_dict()}
        extras["best_step"] = state.best_step
        extras["training"] = {
            "steps": state.step,
            "epochs": round(state.step / max(1, -(-len(examples) // tcfg.batch_size)), 2),
            "examples": len(examples),
            "examples_seen": state.examples_seen,
            "best_step": state.best_step,
            "best_valid_ndcg@10": round(state.best_score, 5),
            "stop_reason": state.stop_reason,
            "train_seconds": round(state.train_seconds, 1),
            "first_loss": curve[0]["loss"] if curve else None,
            "last_loss": curve[-1]["loss"] if curve else None,
            "evaluations": len(curve),
            "curve": _summarise_curve(curve),
            "valid_users": len(valid.targets),
            "resumed_from": self.trainer.resumed_from,
            **({"training_config_checked": self.trainer.training_config_checked}
               if self.trainer.resumed_from else {}),
            "checkpoint_dir": str(self.context.work_dir) if tcfg.checkpoint else None,
        }

    # --- decoding --------------------------------------------------------------------------------
    def decode_batch(self, batch: HistoryBatch, k: int, constrained: bool = True, levels: int | None = None,
                     trie: SemanticIdTrie | None = None, with_scores: bool = False, desc: str | None = None):
        """Beam-search rankings ``[n, k]`` (item ids, -1 padded) and validity ``[n, k]`` for a history
        batch (and the sequence log-probabilities with ``with_scores``). By default over the items
        plain decoding may return (the seen items under the cold-start protocol); ``levels``/``trie``:
        the first ``levels`` tokens over ``trie`` (then the ids are that trie's prefix nodes).
        ``desc``: the label of a progress bar over the users (none without it: validation in training)."""
        beam = max(self.decode_cfg.beam_size, k)
        size = self.decode_cfg.batch_size
        trie = trie or self.decode_trie
        order = np.argsort(batch.lengths, kind="stable")  # similar lengths together: less padding
        items = np.full((len(order), k), -1, dtype=np.int64)
        valid = np.zeros((len(order), k), dtype=bool)
        scores = np.full((len(order), k), -np.inf, dtype=np.float64)
        self.model.eval()
        with self._users_bar(len(order), desc) as bar:
            for start in range(0, len(order), size):
                rows = order[start:start + size]
                input_ids = self.vocab.encoder_inputs(
                    batch.items[rows], batch.lengths[rows], self.user_tokens[batch.users[rows]],
                    width=int(batch.lengths[rows].max()),
                )
                result = beam_search(self.model, self.vocab, trie, input_ids, beam, constrained, levels=levels)
                n = min(k, result.items.shape[1])
                items[rows, :n] = result.items[:, :n].cpu().numpy()
                valid[rows, :n] = result.valid[:, :n].cpu().numpy()
                scores[rows, :n] = result.scores[:, :n].float().cpu().numpy()
                bar.update(len(rows))
        if trie is self.decode_trie and self.seen_index is not None and levels is None:
            items = np.where(items >= 0, self.seen_index[np.clip(items, 0, None)], -1)  # back to catalogue ids
        return (items, valid, scores) if with_scores else (items, valid)

    def cold_rankings(self, batch: HistoryBatch, k: int, unseen: np.ndarray, epsilons, plain=None) -> np.ndarray | list:
        """TIGER's cold-start decoding: the top-``k`` seen items of plain constrained decoding, with the
        unseen items whose first L codes (the collision level left out) match a generated L-code
        prefix mixed in, at most ``floor(epsilon * k)`` of them per list. ``epsilons``: one value (one
        ranking) or a list (a ranking each, from one pair of beam searches); ``plain``: plain
        decoding's ``(items, scores)`` when the caller has them.

        Rule: the prefixes come from a beam search over the first L levels constrained to the codes of
        all items (seen and unseen), scored by their log-probability; an unseen item takes its
        prefix's score, a seen item its full semantic ID's. The list is the ``k`` best of both by
        score (ties: seen before unseen, then the better beam, then the lower item id), skipping unseen
        items once the cap is reached. ``epsilon = 0`` gives plain decoding's list exactly.
        """
        several = isinstance(epsilons, (list, tuple))
        caps = [int(np.floor(float(e) * k)) for e in (epsilons if several else [epsilons])]
        if plain is None:
            items, _, scores = self.decode_batch(batch, k, with_scores=True)
        else:
            items, scores = plain
        rankings = [items] * len(caps)
        if len(unseen) and max(caps) > 0:
            beam = max(self.decode_cfg.beam_size, k)
            prefixes, _, prefix_scores = self.decode_batch(batch, beam, levels=self.vocab.n_levels - 1,
                                                           trie=self.trie, with_scores=True)
            under: dict[int, list[int]] = {}
            for item in np.sort(unseen):
                under.setdefault(int(self.trie.item_prefix_node[item]), []).append(int(item))
            rankings = [items if cap == 0 else np.full_like(items, -1) for cap in caps]
            for row in range(len(items)):
                candidates = [(-scores[row, r], 0, r, int(item)) for r, item in enumerate(items[row]) if item >= 0]
                for r, node in enumerate(prefixes[row]):
                    if node >= 0 and np.isfinite(prefix_scores[row, r]):
                        candidates += [(-prefix_scores[row, r], 1, r, item) for item in under.get(int(node), ())]
                candidates.sort()
                for cap, out in zip(caps, rankings):
                    if cap:
                        chosen = _mix(candidates, cap, k)
                        out[row, :len(chosen)] = chosen
        return rankings if several else rankings[0]

    def rank(self, split: LeaveOneOutSplit, stage: str, k: int) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit() first")
        batch = split.eval_batch(stage)
        constrained = self.decode_cfg.constrained
        beam = max(self.decode_cfg.beam_size, k)
        items, valid, scores = self.decode_batch(batch, k, constrained, with_scores=True,
                                                 desc=f"rank {stage}: beam {beam}" + ("" if constrained else " unconstrained"))
        extras = self.context.extras
        # what decoding used: the beam widens to the longest ranked list (eval.max_k / eval.ks)
        extras.setdefault("decoding", {"valid_beam_in_training": max(self.decode_cfg.beam_size, 10)})[
            f"{stage}_beam"] = beam
        unseen = self.context.unseen_items
        if stage == "test" and constrained and unseen is not None and len(unseen):
            epsilon = self.config.coldstart.epsilon
            cold = np.flatnonzero(np.isin(batch.targets, unseen))
            curve = list(self.config.coldstart.epsilon_curve) if len(cold) else []
            items, *curve_rankings = self.cold_rankings(batch, k, unseen, [epsilon, *curve], plain=(items, scores))
            share = float(np.isin(items[items >= 0], unseen).mean()) if (items >= 0).any() else 0.0
            extras["coldstart_decoding"] = {"epsilon": epsilon, "max_unseen_per_list": int(np.floor(epsilon * k)),
                                            "unseen_share_of_ranked_items": round(share, 5)}
            if curve:
                ks = self._rate_ks(k)
                extras["coldstart_curve"] = {
                    f"{e:g}": evaluate_rankings(ranked[cold], batch.targets[cold], ks=ks)
                    for e, ranked in zip(curve, curve_rankings)
                }
        if not constrained:
            # invalid IDs become distinct out-of-catalogue ids: they take a rank and count as misses
            invalid = ~valid & (np.arange(k)[None, :] < self._returned(k))
            items = np.where(invalid, split.n_items + np.arange(k)[None, :], items)
            extras.setdefault("invalid_id_rate", {})[stage] = invalid_rate(valid, self._rate_ks(k))
        elif stage == "test" and self.decode_cfg.report_invalid_rate:
            _, free_valid = self.decode_batch(batch, k, constrained=False, desc="test: unconstrained beam (invalid IDs)")
            extras["invalid_id_rate"] = {"test (unconstrained beam search)": invalid_rate(free_valid, self._rate_ks(k))}
        if stage == "test" and self.decode_cfg.sample_temperatures:
            extras["diversity"] = self.diversity(split, batch, items, k)
        return items

    def _users_bar(self, total: int, desc: str | None):
        """A tqdm bar over the users being decoded (stderr; off with ``train.progress: false``)."""
        from tqdm.auto import tqdm

        show = desc is not None and self.train_cfg.progress
        return tqdm(total=total, desc=desc, unit="user", disable=not show, dynamic_ncols=True, mininterval=5.0,
                    file=sys.stderr)

    def _returned(self, k: int) -> int:
        return min(k, max(self.decode_cfg.beam_size, k))

    def _rate_ks(self, k: int):
        ks = sorted({x for x in self.config.eval.ks if x <= k} | {k})
        return tuple(ks)

    # --- diversity (TIGER Table 3) ---------------------------------------------------------------
    def sample_rankings(self, batch: HistoryBatch, k: int, temperature: float, n_samples: int, seed: int = 0):
        """Top-k distinct items per user from ``n_samples`` temperature samples, ranked by model log-prob."""
        size = max(1, self.decode_cfg.batch_size * self.decode_cfg.beam_size // max(n_samples, 1))
        generator = torch.Generator(device=self.device).manual_seed(seed)
        out = np.full((len(batch.targets), k), -1, dtype=np.int64)
        with self._users_bar(len(batch.targets), f"test: {n_samples} samples at T={temperature:g}") as bar:
            for start in range(0, len(batch.targets), size):
                rows = np.arange(start, min(start + size, len(batch.targets)))
                input_ids = self.vocab.encoder_inputs(batch.items[rows], batch.lengths[rows], self.user_tokens[batch.users[rows]])
                result = sample_decode(self.model, self.vocab, self.trie, input_ids, n_samples, temperature, generator)
                out[rows] = distinct_top_k(result.items, result.scores, k).cpu().numpy()
                bar.update(len(rows))
        return out

    def diversity(self, split: LeaveOneOutSplit, batch: HistoryBatch, beam_items: np.ndarray, k: int) -> dict:
        categories = item_categories(split.dataset, self.decode_cfg.category_depth)
        if categories is None:
            return {"error": "the dataset has no item categories"}
        ks = self._rate_ks(k)
        n_samples = self.decode_cfg.sample_count
        result = {"beam": {f"entropy@{q}": category_entropy(beam_items, categories, q) for q in ks}}
        for temperature in self.decode_cfg.sample_temperatures:
            ranked = self.sample_rankings(batch, k, float(temperature), n_samples, seed=self.config.seed)
            metrics = evaluate_rankings(ranked, batch.targets, ks=ks)
            result[f"T={float(temperature):g}"] = {
                **{f"entropy@{q}": category_entropy(ranked, categories, q) for q in ks},
                **{f"recall@{q}": metrics[f"recall@{q}"] for q in ks},
            }
        return result
