"""Speed benchmark (not a test): our TIGER implementation vs Hugging Face transformers' T5.

    python benchmarks/tiger_vs_hf_t5.py [--dataset beauty --data-dir DIR] [--users 512] [--beam 20]
                                        [--model paper|cpu|smoke] [--train-steps 300] [--device cpu|cuda]

One run, one set of trained weights, the same users:
  (a) decoding: our batched trie-constrained beam search vs ``T5ForConditionalGeneration.generate(
      num_beams=K, num_return_sequences=K, prefix_allowed_tokens_fn=<trie>)`` on the T5 the weights
      were copied into (``recommenders.model.to_hf_t5``). Equivalence is checked first: the
      teacher-forced logits of the two models, and the share of users whose top-K lists are
      identical (item for item, in order).
  (b) training: optimizer steps per second at the same config on the same batches (AdamW,
      dropout on, the model's loss), ours vs T5 with transformers' default attention (SDPA) and
      with its eager attention; the ratio is taken against the faster of the two.
Prints both ratios and the hardware.

Semantic IDs: ``--semantic-ids random`` (default; 3 x 256 random codes + the collision level, the
shape of TIGER's IDs, needs no tokenizer) or a tokenizer name from ``tokenizers_zoo`` (fitted, cached).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np
import torch

from recommenders.decoding import SemanticIdTrie, beam_search
from recommenders.model import TigerModel, TigerModelConfig, to_hf_t5
from recommenders.trainer import TrainExamples, epoch_batches, tau_cross_entropy
from recommenders.hf_reference import hf_constrained_generate, prefix_table
from recommenders.vocab import BOS, EOS, PAD, SemanticIdVocab

MODELS = {
    "paper": dict(d_model=128, num_heads=6, head_dim=64, d_ff=1024, encoder_layers=4, decoder_layers=4),
    "cpu": dict(d_model=64, num_heads=4, head_dim=32, d_ff=256, encoder_layers=2, decoder_layers=2),
    "smoke": dict(d_model=32, num_heads=2, head_dim=16, d_ff=64, encoder_layers=1, decoder_layers=1),
}


# --- set-up ------------------------------------------------------------------------------------------
def load_split(args):
    from bench.data import DataError, load_dataset
    from bench.split import LeaveOneOutSplit

    try:
        dataset = load_dataset(args.dataset, args.data_dir)
    except (DataError, OSError) as err:
        print(f"note: {args.dataset} not available ({str(err).splitlines()[0]}); using synthetic data", file=sys.stderr)
        dataset = load_dataset("synthetic", None, {"n_users": 6000, "n_items": 3000, "n_categories": 12})
    return LeaveOneOutSplit(dataset, max_history=20)


def semantic_ids_for(split, args):
    if args.semantic_ids == "random":
        from tokenizers_zoo.collision import max_group_size, semantic_ids

        codes = np.random.default_rng(0).integers(0, 256, size=(split.n_items, 3))
        return semantic_ids(codes), [256, 256, 256, max_group_size(codes)]
    import tokenizers_zoo
    from bench.config import resolve_config
    from bench.embed import item_embeddings

    config = resolve_config("cpu", overrides={"tokenizer": {"name": args.semantic_ids}})
    tokenizer = tokenizers_zoo.fit_tokenizer(config, item_embeddings(split.dataset, config))
    return tokenizer.semantic_ids(), tokenizer.codebook_sizes


def hardware(device: torch.device) -> str:
    import transformers

    from bench.provenance import hardware as machine

    facts = machine()
    text = (f"{facts['cpu_model']}, {facts['cpu_count']} logical CPUs, torch {torch.__version__} with "
            f"{facts['torch_threads']} threads")
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text + f", transformers {transformers.__version__}, Python {facts['python']}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the two measurements ----------------------------------------------------------------------------
def train_ours(model, vocab, examples, args, device):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    for index in itertools.islice(itertools.cycle(epoch_batches(examples, args.batch_size, 0, 0, True)), args.train_steps):
        input_ids = vocab.encoder_inputs(examples.items[index], examples.lengths[index], examples.user_tokens[index]).to(device)
        targets = vocab.target_tokens(examples.targets[index]).to(device)
        loss = tau_cross_entropy(model(input_ids, vocab.decoder_inputs(targets)), targets)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    return float(loss.detach())


def time_training(model_cfg, vocab, batches, steps, device, blocks=3, amp: torch.dtype | None = None):
    """Seconds per training step: ours, T5 (sdpa), T5 (eager); interleaved in blocks so drifting load hits all.

    ``amp``: an autocast dtype for the forward passes of all three (None: float32)."""
    torch.manual_seed(0)
    ours = TigerModel(model_cfg).to(device)
    runners = {"ours": ours}
    for impl in ("sdpa", "eager"):
        t5 = to_hf_t5(ours, PAD, EOS, BOS, attn_implementation=impl)
        assert t5.config._attn_implementation == impl, t5.config._attn_implementation
        runners[f"t5-{impl}"] = t5.to(device)
    optims = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in runners.items()}

    def step(name, input_ids, targets):
        model = runners[name]
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            if name == "ours":
                logits = model(input_ids, vocab.decoder_inputs(targets))
            else:
                loss = model(input_ids=input_ids, attention_mask=(input_ids != PAD).long(), labels=targets).loss
        if name == "ours":
            loss = tau_cross_entropy(logits, targets)
        optims[name].zero_grad(set_to_none=True)
        loss.backward()
        optims[name].step()

    for model in runners.values():
        model.train()
    totals = {name: 0.0 for name in runners}
    counts = {name: 0 for name in runners}
    per_block = max(1, steps // blocks)
    for name in runners:  # warm-up
        for input_ids, targets in batches[:2]:
            step(name, input_ids, targets)
    for block in range(blocks):
        for name in runners:
            sync(device)
            start = time.perf_counter()
            for input_ids, targets in batches[block * per_block:(block + 1) * per_block]:
                step(name, input_ids, targets)
            sync(device)
            totals[name] += time.perf_counter() - start
            counts[name] += per_block
    return {name: totals[name] / counts[name] for name in runners}


def logit_difference(model, t5, vocab, input_ids, targets) -> float:
    """Max |teacher-forced logit difference| of our model and the T5 its weights were copied into."""
    with torch.no_grad():
        ours_logits = model(input_ids, vocab.decoder_inputs(targets))
        t5_logits = t5(input_ids=input_ids, attention_mask=(input_ids != PAD).long(),
                       decoder_input_ids=vocab.decoder_inputs(targets)).logits
    return float((ours_logits - t5_logits).abs().max())


def compare_decoding(model, t5, vocab, trie, inputs, beam, device, table=None) -> dict:
    """Decode the batches ``inputs`` with our beam search and with HF generate (interleaved, after a
    warm-up of both): seconds of each, the items ``[users, beam]`` of each, and the share of users
    whose top-``beam`` (and top-10) lists are identical item for item."""
    table = table if table is not None else prefix_table(vocab)
    for warm in (inputs[0][:4],):  # warm-up both paths
        beam_search(model, vocab, trie, warm, beam)
        hf_constrained_generate(t5, vocab, warm, beam, table)
    timings = {"ours": 0.0, "hf": 0.0}
    ours_items, hf_items = [], []
    for input_ids in inputs:  # interleaved, so drifting machine load hits both
        sync(device)
        start = time.perf_counter()
        ours_items.append(beam_search(model, vocab, trie, input_ids, beam).items.cpu())
        sync(device)
        timings["ours"] += time.perf_counter() - start
        start = time.perf_counter()
        hf_items.append(hf_constrained_generate(t5, vocab, input_ids, beam, table))
        sync(device)
        timings["hf"] += time.perf_counter() - start
    ours_items, hf_items = torch.cat(ours_items), torch.cat(hf_items)
    return {
        "timings": timings, "ours_items": ours_items, "hf_items": hf_items,
        "same_lists": float((ours_items == hf_items).all(dim=1).float().mean()),
        "same_top10": float((ours_items[:, :10] == hf_items[:, :10]).all(dim=1).float().mean()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR") or _shared_data_dir())
    parser.add_argument("--semantic-ids", default="random", help="random, or a tokenizer name (random_id, lsh, rqvae, letter)")
    parser.add_argument("--model", default="paper", choices=sorted(MODELS))
    parser.add_argument("--users", type=int, default=512, help="users decoded by both implementations")
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--decode-batch", type=int, default=256, help="users per generate()/beam_search call")
    parser.add_argument("--train-steps", type=int, default=300, help="training steps before decoding (trained weights)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--timed-train-steps", type=int, default=15, help="steps timed per implementation")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    split = load_split(args)
    sids, sizes = semantic_ids_for(split, args)
    vocab = SemanticIdVocab(sids, sizes, user_buckets=2000).to(device)
    trie = SemanticIdTrie(vocab.semantic_ids, vocab.codebook_sizes, device)
    model_cfg = TigerModelConfig(vocab_size=vocab.vocab_size, dropout=0.1, **MODELS[args.model])
    train = split.train_examples
    user_tokens = vocab.user_tokens(split.dataset.user_ids)
    examples = TrainExamples(train.items, train.lengths, user_tokens[train.users], train.targets)
    print(f"data: {split.dataset.name}, {split.n_users} users, {split.n_items} items, {len(examples)} training examples; "
          f"semantic IDs {args.semantic_ids} {sizes}; model {args.model} {MODELS[args.model]}")
    print(f"hardware: {hardware(device)}")

    model = TigerModel(model_cfg).to(device)
    start = time.perf_counter()
    loss = train_ours(model, vocab, examples, args, device)
    print(f"trained our model {args.train_steps} steps ({time.perf_counter() - start:.0f}s, last loss {loss:.3f})")
    t5 = to_hf_t5(model, PAD, EOS, BOS).eval()

    # the same users for both: the first --users test users
    batch = split.eval_batch("test")
    rows = np.arange(min(args.users, split.n_users))
    chunks = [rows[i:i + args.decode_batch] for i in range(0, len(rows), args.decode_batch)]
    inputs = [vocab.encoder_inputs(batch.items[c], batch.lengths[c], user_tokens[batch.users[c]]).to(device) for c in chunks]

    targets = vocab.target_tokens(batch.targets[chunks[0]]).to(device)
    logit_diff = logit_difference(model, t5, vocab, inputs[0], targets)
    decoded = compare_decoding(model, t5, vocab, trie, inputs, args.beam, device)
    timings, same_lists, same_top10 = decoded["timings"], decoded["same_lists"], decoded["same_top10"]
    n_users = len(rows)
    print(f"\nequivalence: max |logit difference| {logit_diff:.2e}; identical top-{args.beam} lists for "
          f"{same_lists:.1%} of {n_users} users (identical top-10: {same_top10:.1%})")
    print(f"(a) decoding {n_users} users, beam {args.beam}, batches of {args.decode_batch}: "
          f"ours {timings['ours']:.2f}s ({n_users / timings['ours']:.0f} users/s), "
          f"HF generate {timings['hf']:.2f}s ({n_users / timings['hf']:.1f} users/s) "
          f"-> ours is {timings['hf'] / timings['ours']:.1f}x faster")

    # training speed on the same batches, same config
    epoch = epoch_batches(examples, args.batch_size, 1, 0, False)
    timed = []
    for index in epoch[:args.timed_train_steps + 2]:
        input_ids = vocab.encoder_inputs(examples.items[index], examples.lengths[index], examples.user_tokens[index]).to(device)
        timed.append((input_ids, vocab.target_tokens(examples.targets[index]).to(device)))
    seconds = time_training(model_cfg, vocab, timed[2:] if len(timed) > 2 else timed, args.timed_train_steps, device)
    best_hf = min(seconds["t5-sdpa"], seconds["t5-eager"])
    print(f"(b) training, batch {args.batch_size}, {args.timed_train_steps} steps each: ours {1 / seconds['ours']:.2f} steps/s, "
          f"T5 (sdpa) {1 / seconds['t5-sdpa']:.2f} steps/s, T5 (eager) {1 / seconds['t5-eager']:.2f} steps/s "
          f"-> ours is {best_hf / seconds['ours']:.2f}x faster than the faster T5")
    print(f"\nratios: decoding {timings['hf'] / timings['ours']:.1f}x, training {best_hf / seconds['ours']:.2f}x "
          f"(targets: >= 10x, >= 1.3x)")
    return 0


def _shared_data_dir() -> str | None:
    from pathlib import Path

    candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "amazon2014"
    return str(candidate) if candidate.is_dir() else None


if __name__ == "__main__":
    sys.exit(main())
