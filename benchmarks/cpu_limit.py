"""How close TIGER's training runs to this machine's limit (a benchmark, not a test).

    python benchmarks/cpu_limit.py [--threads 1] [--steps 12] [--blocks 3] [--models cpu,paper]
                                   [--dataset beauty --data-dir DIR] [--compile] [--decode-users 512]

Measured side by side in one run, on the same batches (Beauty-shaped: histories up to 20 items of
4-token semantic IDs, batch 256 unless --batch-size), interleaved in blocks so that drifting load on a
shared machine hits every variant alike:

- GEMM throughput of this machine (1024^3 matmul), float32 and bfloat16: the peak the training step
  is compared with;
- training steps/s of the cpu-profile and paper models (forward + backward + AdamW, the model's loss),
  float32 vs bf16 autocast (``train.amp: bf16``), and optionally ``torch.compile`` of the model;
- the step's achieved FLOP/s (matmul FLOPs counted by ``torch.utils.flop_counter``) as a share of
  the GEMM peak of its precision;
- decoding throughput (users/s of the trie-constrained beam search, beam 20) per model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from bench.config import resolve_config
from bench.device import cpu_has_bf16
from bench.provenance import hardware
from recommenders.decoding import SemanticIdTrie, beam_search
from recommenders.model import TigerModel, TigerModelConfig
from recommenders.trainer import TrainExamples, epoch_batches, tau_cross_entropy
from recommenders.vocab import SemanticIdVocab


def gemm_gflops(dtype: torch.dtype, n: int = 1024, reps: int = 6) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9


def load_examples(args):
    from bench.data import load_dataset
    from bench.split import LeaveOneOutSplit
    from tokenizers_zoo.collision import max_group_size, semantic_ids

    try:
        dataset = load_dataset(args.dataset, args.data_dir)
    except Exception as err:  # noqa: BLE001 - any failure: fall back to data of the same shape
        print(f"note: {args.dataset} not available ({str(err).splitlines()[0]}); synthetic data", file=sys.stderr)
        dataset = load_dataset("synthetic", None, {"n_users": 6000, "n_items": 3000, "n_categories": 12})
    split = LeaveOneOutSplit(dataset, max_history=20)
    codes = np.random.default_rng(0).integers(0, 256, size=(split.n_items, 3))
    vocab = SemanticIdVocab(semantic_ids(codes), [256, 256, 256, max_group_size(codes)], user_buckets=2000)
    train = split.train_examples
    examples = TrainExamples(train.items, train.lengths, vocab.user_tokens(split.dataset.user_ids)[train.users],
                             train.targets)
    return split, vocab, examples


def model_config(profile: str, vocab: SemanticIdVocab) -> TigerModelConfig:
    section = resolve_config(profile, overrides={"method": "tiger"}).model
    return TigerModelConfig.from_config(section, vocab.vocab_size)


class Variant:
    """One way to train one model: its own weights, optimizer, precision and (optionally) compile."""

    def __init__(self, name, cfg, vocab, amp, compiled=False):
        torch.manual_seed(0)
        self.name, self.vocab, self.amp = name, vocab, amp
        self.model = TigerModel(cfg)
        self.model.train()
        self.forward = torch.compile(self.model) if compiled else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.seconds, self.steps = 0.0, 0

    def loss(self, input_ids, targets):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
            logits = self.forward(input_ids, self.vocab.decoder_inputs(targets))
        return tau_cross_entropy(logits, targets)

    def step(self, input_ids, targets) -> None:
        loss = self.loss(input_ids, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()


def matmul_flops(variant: Variant, batch) -> float:
    """FLOPs of one training step (forward + backward), as torch's flop counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss = variant.loss(*batch)
        loss.backward()
    variant.optimizer.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def time_variants(variants, batches, blocks: int) -> None:
    per_block = max(1, len(batches) // blocks)
    for variant in variants:  # warm-up (and compilation)
        for batch in batches[:2]:
            variant.step(*batch)
    for block in range(blocks):
        for variant in variants:
            start = time.perf_counter()
            for batch in batches[block * per_block:(block + 1) * per_block]:
                variant.step(*batch)
            variant.seconds += time.perf_counter() - start
            variant.steps += per_block


def decode_users_per_second(model: TigerModel, vocab, split, users: int, beam: int = 20, batch: int = 256) -> float:
    trie = SemanticIdTrie(vocab.semantic_ids, vocab.codebook_sizes, torch.device("cpu"))
    history = split.eval_batch("test")
    tokens = vocab.user_tokens(split.dataset.user_ids)
    model.eval()
    done, start = 0, time.perf_counter()
    for first in range(0, users, batch):
        rows = np.arange(first, min(first + batch, users, split.n_users))
        ids = vocab.encoder_inputs(history.items[rows], history.lengths[rows], tokens[history.users[rows]])
        beam_search(model, vocab, trie, ids, beam, True)
        done += len(rows)
    return done / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="cpu,paper", help="profiles whose model sections to measure")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the model (fp32, bf16)")
    parser.add_argument("--decode-users", type=int, default=512)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    facts, native = hardware(), cpu_has_bf16()
    print(f"hardware: {facts['cpu_model']} ({facts['cpu_generation']}; {' '.join(facts['cpu_flags']) or 'no AVX2'}), "
          f"{facts['cpu_count']} logical CPUs, {args.threads} torch thread(s), "
          f"torch {torch.__version__}, native bf16: {native}")
    peak = {"fp32": gemm_gflops(torch.float32), "bf16": gemm_gflops(torch.bfloat16)}
    print(f"GEMM 1024^3: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s "
          f"(bf16/fp32 {peak['bf16'] / peak['fp32']:.2f}x)")

    split, vocab, examples = load_examples(args)
    order = epoch_batches(examples, args.batch_size, seed=0, epoch=0, group_by_length=True)
    batches = []
    for index in order[: args.steps + 2]:
        index = torch.from_numpy(index)
        input_ids = vocab.encoder_inputs(examples.items[index], examples.lengths[index], examples.user_tokens[index])
        batches.append((input_ids, vocab.target_tokens(examples.targets[index])))
    print(f"data: {split.dataset.name}, {len(examples)} training examples, batch {args.batch_size}, "
          f"{args.steps} timed steps per variant in {args.blocks} interleaved blocks")

    for profile in args.models.split(","):
        cfg = model_config(profile, vocab)
        variants = [Variant("fp32", cfg, vocab, amp=False), Variant("bf16", cfg, vocab, amp=True)]
        if args.compile:
            variants += [Variant("fp32+compile", cfg, vocab, amp=False, compiled=True),
                         Variant("bf16+compile", cfg, vocab, amp=True, compiled=True)]
        time_variants(variants, batches, args.blocks)
        params = variants[0].model.num_parameters()
        print(f"\nmodel of profile {profile}: {params / 1e6:.2f} M parameters "
              f"({cfg.encoder_layers}+{cfg.decoder_layers} layers, d_model {cfg.d_model}, d_ff {cfg.d_ff})")
        base = variants[0].steps / variants[0].seconds
        for variant in variants:
            rate = variant.steps / variant.seconds
            flops = matmul_flops(variant, batches[0])
            precision = "bf16" if variant.amp else "fp32"
            achieved = flops * rate / 1e9
            # emulated bf16 has no peak to compare with (autocast keeps some matmuls in fp32)
            share = (f"{achieved / peak[precision]:5.1%} of the {precision} GEMM peak" if precision == "fp32" or native
                     else "no share: bf16 is emulated on this CPU")
            print(f"  {variant.name:13s} {rate:6.2f} steps/s  x{rate / base:4.2f} vs fp32  "
                  f"{achieved:6.1f} GFLOP/s = {share} ({flops / 1e9:.2f} GFLOP/step)")
        users = decode_users_per_second(variants[0].model, vocab, split, args.decode_users)
        print(f"  decoding (beam 20, fp32): {users:.0f} users/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
