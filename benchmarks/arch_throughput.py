"""Training throughput of the generative recommender's architectures, side by side (a benchmark, not a test).

    python benchmarks/arch_throughput.py [--profile cpu] [--threads 1] [--steps 12] [--blocks 3]
                                         [--batch-size 256] [--dataset beauty --data-dir DIR]

On the same Beauty split (random 3 x 256 codes + collision level, the model of ``--profile``), timed in
interleaved blocks so that drifting load on a shared machine hits every variant alike:

- ``encoder_decoder / last`` (TIGER): a batch of prefix examples, the loss on the next item's codes;
- ``decoder_only / last``: the same prefix examples as one causal sequence each (items as [BOS, codes]);
- ``decoder_only / all``: a batch of users' latest training windows, the loss on every item after the
  first (``train.loss_positions: all``).

Per variant: optimizer steps/s, examples/s, *targets*/s (items predicted per second: one per prefix
example, one per item after the first in a window: the unit in which the three compare), and the
matmul FLOPs of one step (forward + backward, ``torch.utils.flop_counter``) per target.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from bench.config import resolve_config
from bench.data import load_dataset
from bench.provenance import hardware
from bench.split import LeaveOneOutSplit
from recommenders.architectures import build_model
from recommenders.model import TigerModelConfig
from recommenders.tiger import latest_per_user
from recommenders.trainer import epoch_batches, tau_cross_entropy, TrainExamples
from recommenders.vocab import SemanticIdVocab
from tokenizers_zoo.collision import max_group_size, semantic_ids


class Variant:
    def __init__(self, name: str, arch: str, positions: str, cfg: dict, vocab: SemanticIdVocab, batches):
        torch.manual_seed(0)
        self.name, self.positions, self.vocab, self.batches = name, positions, vocab, batches
        self.model = build_model(TigerModelConfig.from_config({**cfg, "arch": arch}, vocab.vocab_size)).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.seconds, self.steps, self.examples, self.targets = 0.0, 0, 0, 0

    def loss(self, input_ids, targets):
        decoder_ids = self.vocab.decoder_inputs(targets)
        if self.positions == "all":
            logits, labels = self.model.all_positions(input_ids, decoder_ids, targets, self.vocab.user_offset)
            return tau_cross_entropy(logits, labels), len(labels) // self.vocab.n_levels
        return tau_cross_entropy(self.model(input_ids, decoder_ids), targets), len(targets)

    def step(self, batch) -> int:
        loss, targets = self.loss(*batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return targets

    def flops(self) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            loss, _ = self.loss(*self.batches[0])
            loss.backward()
        self.optimizer.zero_grad(set_to_none=True)
        return float(counter.get_total_flops())


def make_batches(examples: TrainExamples, vocab: SemanticIdVocab, batch_size: int, n: int):
    out = []
    for index in epoch_batches(examples, batch_size, seed=0, epoch=0, group_by_length=True)[:n]:
        index = torch.from_numpy(index)
        input_ids = vocab.encoder_inputs(examples.items[index], examples.lengths[index], examples.user_tokens[index])
        out.append((input_ids, vocab.target_tokens(examples.targets[index])))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    parser.add_argument("--profile", default="cpu", help="the profile whose model section to measure")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    parser.add_argument("--blocks", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    facts = hardware()
    print(f"hardware: {facts['cpu_model']} ({facts['cpu_generation']}), {args.threads} torch thread(s), torch {torch.__version__}")
    split = LeaveOneOutSplit(load_dataset(args.dataset, args.data_dir), max_history=20)
    codes = np.random.default_rng(0).integers(0, 256, size=(split.n_items, 3))
    sids, sizes = semantic_ids(codes), [256, 256, 256, max_group_size(codes)]
    plain, separated = (SemanticIdVocab(sids, sizes, 2000, separators=s) for s in (False, True))
    train = split.train_examples
    users = plain.user_tokens(split.dataset.user_ids)
    prefixes = TrainExamples(train.items, train.lengths, users[train.users], train.targets)
    latest = latest_per_user(train)  # what train.loss_positions=all trains on
    windows = TrainExamples(latest.items, latest.lengths, users[latest.users], latest.targets)
    cfg = resolve_config(args.profile, overrides={"method": "tiger"}).model
    n = args.steps + 2
    variants = [
        Variant("encoder_decoder / last", "encoder_decoder", "last", cfg, plain, make_batches(prefixes, plain, args.batch_size, n)),
        Variant("decoder_only / last", "decoder_only", "last", cfg, separated, make_batches(prefixes, separated, args.batch_size, n)),
        Variant("decoder_only / all", "decoder_only", "all", cfg, separated, make_batches(windows, separated, args.batch_size, n)),
    ]
    print(f"data: {split.dataset.name}: {len(prefixes)} prefix examples, {len(windows)} user windows; batch "
          f"{args.batch_size}; model of profile {args.profile} ({cfg.encoder_layers}+{cfg.decoder_layers} layers, "
          f"d_model {cfg.d_model}); {args.steps} timed steps per variant in {args.blocks} interleaved blocks")
    for variant in variants:  # warm-up
        for batch in variant.batches[:2]:
            variant.step(batch)
    per_block = max(1, args.steps // args.blocks)
    for block in range(args.blocks):
        for variant in variants:
            start = time.perf_counter()
            for batch in variant.batches[2 + block * per_block: 2 + (block + 1) * per_block]:
                variant.targets += variant.step(batch)
                variant.examples += len(batch[1])
                variant.steps += 1
            variant.seconds += time.perf_counter() - start
    base = variants[0].targets / variants[0].seconds
    print(f"\n{'variant':24s} {'params':>8s} {'steps/s':>8s} {'examples/s':>11s} {'targets/s':>10s} {'vs enc-dec':>10s} "
          f"{'GFLOP/step':>10s} {'MFLOP/target':>12s}")
    for variant in variants:
        flops = variant.flops()
        targets_per_step = variant.targets / variant.steps
        rate = variant.targets / variant.seconds
        print(f"{variant.name:24s} {variant.model.num_parameters() / 1e6:7.2f}M {variant.steps / variant.seconds:8.2f} "
              f"{variant.examples / variant.seconds:11.0f} {rate:10.0f} {rate / base:9.2f}x "
              f"{flops / 1e9:10.2f} {flops / targets_per_step / 1e6:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
