"""On one GPU: how fast TIGER trains and decodes, against Hugging Face T5 and the chip's matmul peak
(a benchmark, not a test; issue 28).

    python benchmarks/gpu_speed.py [--out results/benchmarks] [--device cuda|cpu] [--tiny]
                                   [--models paper,large] [--batch-sizes 256,512,1024,2048,4096]
                                   [--precisions fp32,tf32,bf16] [--steps 10] [--budget 300] [--compile]

Measured side by side in one run (on CUDA; ``--device cpu --tiny`` runs every CPU-capable part at
tiny sizes and prints why each GPU-only part is skipped):

1. the chip's matmul peak: an ``N^3`` ``torch.matmul`` (N = 8192 on CUDA) in bf16, TF32 and fp32,
   timed with CUDA events;
2. training, ours: optimizer steps/s and examples/s of the paper model (4+4 layers, d_model 128,
   6 heads x 64, FFN 1024) and a larger one (8+8, d_model 512, 8 x 64, FFN 2048) in fp32 (TF32 off),
   TF32 and bf16 autocast (TF32 on, as ``recommenders/tiger.py`` trains on CUDA), at each batch size;
   each step as the trainer's (``Trainer._step``): the training examples resident on the device,
   batches gathered there, AdamW, grad clip 1.0, the loss accumulated on the device and never read
   (the trainer reads it every 20 steps). Per configuration: the step's matmul FLOPs of forward +
   backward counted from the layer shapes (:func:`step_flops`; cross-checked once against
   ``torch.utils.flop_counter``), the achieved FLOP/s as a share of the measured matmul peak of the
   same precision, and the peak memory (``torch.cuda.max_memory_allocated``);
3. host synchronisation: the same step with ``loss.item()`` after every step, and with the batch
   built on the host and copied each step (+ ``loss.item()``), at batch 256 and at the best batch;
4. training, ours vs Hugging Face's ``T5ForConditionalGeneration`` (weights copied, SDPA and eager
   attention) on the same batches (``tiger_vs_hf_t5.time_training``), fp32 and bf16;
5. decoding: users/s of our trie-constrained beam search vs ``generate(num_beams=K,
   prefix_allowed_tokens_fn=<trie>)`` with the same (briefly trained) weights, users and trie; the
   ratio counts only when the top-K lists are identical (``tiger_vs_hf_t5.compare_decoding``); then
   ours alone at larger decoding batches;
6. optional (``--compile``): ``torch.compile(model, dynamic=True)`` for the paper model in bf16 at the
   best batch. CUDA graphs are not measured (batch widths vary with the history length, so a graph
   per width would be needed; skipped).

Writes ``gpu_speed.json`` and ``gpu_speed.md`` into ``--out`` after every section (a run cut short by
its time budget or a ``timeout`` keeps what it measured). Ratios in both: ours vs HF generate at
identical top-K, training ours vs HF T5, the bf16 step's share of the bf16 matmul peak at the best
batch, and the time for 17 epochs of Beauty (131,413 training examples per epoch) at the best rate.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: the sibling benchmark
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # and the project, without an install

from tiger_vs_hf_t5 import (  # noqa: E402
    MODELS, _shared_data_dir, compare_decoding, hardware, load_split, logit_difference, semantic_ids_for,
    sync, time_training, train_ours,
)

from recommenders.decoding import SemanticIdTrie, beam_search  # noqa: E402
from recommenders.model import TigerModel, TigerModelConfig, to_hf_t5  # noqa: E402
from recommenders.trainer import TrainExamples, epoch_batches, tau_cross_entropy  # noqa: E402
from recommenders.vocab import BOS, EOS, PAD, SemanticIdVocab  # noqa: E402

GPU_MODELS = {
    "paper": MODELS["paper"],
    "large": dict(d_model=512, num_heads=8, head_dim=64, d_ff=2048, encoder_layers=8, decoder_layers=8),
    "smoke": MODELS["smoke"],
    "cpu": MODELS["cpu"],
}
OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
BEAUTY_EXAMPLES_PER_EPOCH = 131_413
EPOCHS = 17


# --- precision -----------------------------------------------------------------------------------------
def set_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Set TF32 for ``precision`` and return its autocast dtype (None: no autocast)."""
    if device.type == "cuda":
        tf32 = precision in ("tf32", "bf16")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return torch.bfloat16 if precision == "bf16" else None


def precision_skip(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` is not measured on ``device`` (None: it is)."""
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return "this GPU has no bf16"
        return None
    if precision == "tf32":
        return "TF32 is a CUDA (Ampere+) matmul mode"
    if precision == "bf16":
        from bench.device import cpu_has_bf16

        if not cpu_has_bf16():
            return "this CPU has no native bf16 (avx512_bf16/amx_bf16): emulated, not a meaningful speed"
    return None


# --- matmul peak ---------------------------------------------------------------------------------------
def matmul_peak(precision: str, device: torch.device, n: int, reps: int) -> float:
    """FLOP/s of an ``n^3`` ``torch.matmul`` in ``precision`` (CUDA events on CUDA)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    set_precision("tf32" if precision == "tf32" else "fp32", device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        torch.matmul(a, b)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(reps):
            torch.matmul(a, b)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1e3
    else:
        begin = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        seconds = time.perf_counter() - begin
    del a, b
    return 2 * n ** 3 * reps / seconds


# --- FLOPs of a training step from the layer shapes ----------------------------------------------------
def step_flops(cfg: TigerModelConfig, batch: int, enc_len: int, dec_len: int, enc_tokens: int | None = None) -> float:
    """Matmul FLOPs of one training step (forward + backward) of ``TigerModel`` on a batch of ``batch``
    examples with encoder inputs of ``enc_len`` tokens and ``dec_len`` decoder tokens.

    ``enc_tokens``: the encoder tokens its token-wise layers run on (the real tokens when the encoder
    runs unpadded, on CPU; default ``batch * enc_len``). Attention always runs padded. Each matmul of
    ``m x k x n`` costs ``2mkn`` forward and ``4mkn`` backward (the gradients of both operands), so
    the step is ``6 x`` the multiply-accumulates. Not counted: the embedding lookups, norms, softmax,
    dropout, the loss and the optimizer (none of them a matmul).
    """
    d, h, dh, ff, vocab = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.d_ff, cfg.vocab_size
    inner = h * dh
    n_enc = batch * enc_len if enc_tokens is None else enc_tokens
    n_dec = batch * dec_len
    encoder = cfg.encoder_layers * (
        n_enc * (3 * d * inner + inner * d + 2 * d * ff)  # qkv, o, feed-forward
        + 2 * batch * h * enc_len * enc_len * dh  # q k^T, p v
    )
    decoder = cfg.decoder_layers * (
        n_dec * (3 * d * inner + inner * d)  # self-attention projections
        + 2 * batch * h * dec_len * dec_len * dh
        + n_dec * (d * inner + inner * d)  # cross-attention q, o
        + n_enc * 2 * d * inner  # cross-attention k, v of the encoder states
        + 2 * batch * h * dec_len * enc_len * dh
        + n_dec * 2 * d * ff
    )
    logits = n_dec * d * vocab
    return 6.0 * (encoder + decoder + logits)


def counted_flops(model, input_ids, decoder_ids, targets, amp) -> float:
    """The same step's FLOPs as ``torch.utils.flop_counter`` counts them (a check of :func:`step_flops`)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.autocast(input_ids.device.type, dtype=amp, enabled=amp is not None):
            logits = model(input_ids, decoder_ids)
        tau_cross_entropy(logits, targets).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


# --- training, ours ------------------------------------------------------------------------------------
class OurTraining:
    """``Trainer._step`` without the learning-rate schedule: examples resident on the device."""

    def __init__(self, cfg: TigerModelConfig, vocab, examples: TrainExamples, device, amp, compile_model=False):
        torch.manual_seed(0)
        self.model = TigerModel(cfg).to(device).train()
        self.forward = torch.compile(self.model, dynamic=True) if compile_model else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.vocab, self.examples, self.device, self.amp = vocab, examples, device, amp
        self.data = examples.to(device)
        self.host_vocab = copy.copy(vocab)  # the same vocabulary with its token table on the host
        self.host_vocab.item_tokens = vocab.item_tokens.cpu()

    def step(self, index: np.ndarray, mode: str = "resident") -> torch.Tensor:
        """``resident``: the trainer's step; ``resident+sync``: plus ``loss.item()``; ``host+sync``: the
        batch built on the host and copied, plus ``loss.item()``."""
        vocab, device = self.vocab, self.device
        width = int(self.examples.lengths[index].max())
        if mode == "host+sync":
            ex = self.examples
            host = self.host_vocab
            input_ids = host.encoder_inputs(ex.items[index], ex.lengths[index], ex.user_tokens[index], width=width)
            targets = host.target_tokens(ex.targets[index])
            input_ids, targets = input_ids.to(device), targets.to(device)
        else:
            data = self.data
            rows = torch.from_numpy(index).to(device, non_blocking=True)
            input_ids = vocab.encoder_inputs(data.items[rows], data.lengths[rows], data.user_tokens[rows], width=width)
            targets = vocab.target_tokens(data.targets[rows])
        with torch.autocast(device.type, dtype=self.amp, enabled=self.amp is not None):
            logits = self.forward(input_ids, vocab.decoder_inputs(targets))
        loss = tau_cross_entropy(logits, targets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if mode != "resident":
            loss.item()
        return loss.detach()


def time_ours(run: OurTraining, batches, warmup: int, mode: str = "resident") -> dict:
    """Steps/s, examples/s and the FLOPs of ``batches`` (after ``warmup`` of them)."""
    device = run.device
    loss_sum = torch.zeros((), device=device)
    for index in batches[:warmup]:
        loss_sum += run.step(index, mode)
    timed = batches[warmup:]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for index in timed:
        loss_sum += run.step(index, mode)
    sync(device)
    seconds = time.perf_counter() - start
    loss = float(loss_sum) / len(batches)
    cfg, levels = run.model.cfg, run.vocab.n_levels
    unpadded = device.type == "cpu"  # TigerModel.unpad == "auto": the encoder skips padding on CPU only
    flops = 0.0
    for index in timed:
        lengths = run.examples.lengths[index]
        enc_len = 1 + levels * int(lengths.max())
        flops += step_flops(cfg, len(index), enc_len, levels,
                            int((1 + levels * lengths).sum()) if unpadded else None)
    n_examples = int(sum(len(i) for i in timed))
    return {
        "steps": len(timed), "seconds": seconds, "steps_per_s": len(timed) / seconds,
        "examples_per_s": n_examples / seconds, "flops_per_step": flops / len(timed),
        "achieved_flops": flops / seconds, "mean_loss": loss,
        "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


# --- the run -------------------------------------------------------------------------------------------
class Report:
    def __init__(self, out: Path, args):
        self.out, self.args = out, args
        self.data: dict = {"args": vars(args), "skipped": [], "training": [], "host_sync": [], "t5_training": [],
                           "decoding": [], "compile": [], "ratios": {}}
        self.start = time.perf_counter()

    def skip(self, what: str, why: str) -> None:
        print(f"skipped: {what}: {why}")
        self.data["skipped"].append({"what": what, "why": why})

    def over_budget(self, what: str) -> bool:
        elapsed = time.perf_counter() - self.start
        if elapsed > self.args.budget:
            self.skip(what, f"time budget ({elapsed:.0f}s of --budget {self.args.budget:.0f}s used)")
            return True
        return False

    def save(self) -> None:
        self.data["elapsed_s"] = time.perf_counter() - self.start
        self.data["ratios"] = ratios(self.data)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_speed.json").write_text(json.dumps(self.data, indent=1, default=float) + "\n")
        (self.out / "gpu_speed.md").write_text(markdown(self.data))


def best_training(data: dict, model: str, precision: str | None = None) -> dict | None:
    rows = [r for r in data["training"] if r["model"] == model and "error" not in r
            and (precision is None or r["precision"] == precision)]
    return max(rows, key=lambda r: r["examples_per_s"]) if rows else None


def ratios(data: dict) -> dict:
    out: dict = {}
    for row in data["decoding"]:
        if "hf_users_per_s" in row:
            key = f"decoding_ours_vs_hf_{row['model']}"
            out[key] = row["ours_users_per_s"] / row["hf_users_per_s"]
            out[key + "_identical_top_k_share"] = row["identical_top_k"]  # 1.0: the same lists for every user
    for row in data["t5_training"]:
        out[f"training_ours_vs_hf_t5_{row['model']}_{row['precision']}_b{row['batch_size']}"] = row["ours_vs_best_t5"]
    models = sorted({r["model"] for r in data["training"]})
    for model in models:
        best_bf16 = best_training(data, model, "bf16")
        if best_bf16 and best_bf16.get("share_of_peak") is not None:
            out[f"bf16_step_share_of_bf16_matmul_peak_{model}"] = best_bf16["share_of_peak"]
            out[f"bf16_best_batch_{model}"] = best_bf16["batch_size"]
        best = best_training(data, model)
        if best:
            seconds = EPOCHS * BEAUTY_EXAMPLES_PER_EPOCH / best["examples_per_s"]
            out[f"beauty_{EPOCHS}_epochs_minutes_{model}"] = seconds / 60
            out[f"beauty_{EPOCHS}_epochs_at_{model}"] = f"{best['precision']}, batch {best['batch_size']}"
    for row in data["host_sync"]:
        if row["mode"] != "resident" and row.get("resident_examples_per_s"):
            out[f"resident_vs_{row['mode']}_{row['model']}_{row['precision']}_b{row['batch_size']}"] = (
                row["resident_examples_per_s"] / row["examples_per_s"])
    return out


def _fmt(value, spec=".3g") -> str:
    return "-" if value is None else format(value, spec)


def _section(title: str, headers: list[str], rows: list[list]) -> list[str]:
    """A Markdown section: ``## title``, then a table of ``rows`` (cells already formatted)."""
    return [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def _training_row(r: dict) -> list:
    if "error" in r:
        return [r["model"], r["precision"], r["batch_size"], r["error"], "", "", "", "", ""]
    return [r["model"], r["precision"], r["batch_size"], f"{r['steps_per_s']:.2f}", f"{r['examples_per_s']:.0f}",
            f"{r['flops_per_step'] / 1e9:.2f}", f"{r['achieved_flops'] / 1e12:.3f}",
            _fmt(r.get("share_of_peak"), ".1%"), _fmt(r.get("peak_memory_gb"), ".2f")]


def markdown(data: dict) -> str:
    lines = ["# TIGER on one device: training and decoding speed (benchmarks/gpu_speed.py)", "",
             f"Hardware: {data.get('hardware', '?')}", "", f"Data: {data.get('data', '?')}", ""]
    if data.get("peak"):
        lines += _section("Matmul peak", ["precision", "n", "TFLOP/s"],
                          [[p, data["peak_n"], f"{v / 1e12:.2f}"] for p, v in data["peak"].items()])
    if data["training"]:
        lines += _section("Training, ours (data resident on the device, no per-step sync)",
                          ["model", "precision", "batch", "steps/s", "examples/s", "GFLOP/step", "TFLOP/s",
                           "share of peak", "peak mem GB"], [_training_row(r) for r in data["training"]])
        if data.get("flop_check"):
            lines += [f"FLOP count check (one batch, torch.utils.flop_counter / ours from the shapes): "
                      + ", ".join(f"{k} {v:.3f}" for k, v in data["flop_check"].items()), ""]
    if data["host_sync"]:
        lines += _section("Host synchronisation",
                          ["model", "precision", "batch", "mode", "steps/s", "examples/s", "resident / this"],
                          [[r["model"], r["precision"], r["batch_size"], r["mode"], f"{r['steps_per_s']:.2f}",
                            f"{r['examples_per_s']:.0f}",
                            _fmt(r["resident_examples_per_s"] / r["examples_per_s"]
                                 if r.get("resident_examples_per_s") else None, ".2f")]
                           for r in data["host_sync"]])
    if data["t5_training"]:
        lines += _section("Training, ours vs Hugging Face T5 (same batches, no grad clip, batches on the device)",
                          ["model", "precision", "batch", "ours steps/s", "T5 sdpa", "T5 eager", "ours / faster T5"],
                          [[r["model"], r["precision"], r["batch_size"], f"{r['ours_steps_per_s']:.2f}",
                            f"{r['t5-sdpa_steps_per_s']:.2f}", f"{r['t5-eager_steps_per_s']:.2f}",
                            f"{r['ours_vs_best_t5']:.2f}x"] for r in data["t5_training"]])
    if data["decoding"]:
        lines += _section("Decoding (trie-constrained beam search, fp32)",
                          ["model", "users", "beam", "users/call", "ours users/s", "HF generate users/s",
                           "identical top-K", "max logit diff"],
                          [[r["model"], r["users"], r["beam"], r["decode_batch"], f"{r['ours_users_per_s']:.0f}",
                            _fmt(r.get("hf_users_per_s"), ".1f"), _fmt(r.get("identical_top_k"), ".1%"),
                            _fmt(r.get("max_logit_diff"), ".1e")] for r in data["decoding"]])
    if data["compile"]:
        lines += ["## torch.compile", ""] + [f"- {json.dumps(r, default=float)}" for r in data["compile"]] + [""]
    lines += ["## Ratios", ""] + [f"- {k}: {_fmt(v, '.3g') if isinstance(v, float) else v}" for k, v in data["ratios"].items()]
    if data["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {s['what']}: {s['why']}" for s in data["skipped"]]
    return "\n".join(lines) + f"\n\nElapsed {data.get('elapsed_s', 0):.0f}s.\n"


def parse_list(text: str, kind=str) -> list:
    return [kind(x) for x in text.split(",") if x]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/benchmarks", help="folder for gpu_speed.json and gpu_speed.md")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU rehearsal): smoke/cpu models, small batches")
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR") or _shared_data_dir())
    parser.add_argument("--semantic-ids", default="random", help="random (3 x 256 + collision level) or a tokenizer name")
    parser.add_argument("--models", default=None, help="comma list of paper, large, cpu, smoke (default paper,large; tiny: smoke,cpu)")
    parser.add_argument("--batch-sizes", default=None, help="default 256,512,1024,2048,4096 (tiny: 16,64)")
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 10; tiny 3)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-n", type=int, default=None, help="matmul size for the peak (default 8192; tiny 256)")
    parser.add_argument("--t5-batches", default=None, help="batch sizes of the T5 comparison (default 256,2048; tiny 16)")
    parser.add_argument("--train-steps", type=int, default=None, help="steps before decoding (default 300; tiny 20)")
    parser.add_argument("--users", type=int, default=None, help="users decoded by both (default 1024; tiny 32)")
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--decode-batch", type=int, default=None, help="users per call, both (default 256; tiny 16)")
    parser.add_argument("--ours-decode-batches", default=None, help="ours alone at these users per call (default 1024,4096; tiny none)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (paper model, bf16, best batch)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds; later sections are skipped once spent")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.models = args.models or ("smoke,cpu" if tiny else "paper,large")
    args.batch_sizes = args.batch_sizes or ("16,64" if tiny else "256,512,1024,2048,4096")
    args.steps = args.steps or (3 if tiny else 10)
    args.warmup = min(args.warmup, 1) if tiny else args.warmup
    args.peak_n = args.peak_n or (256 if tiny else 8192)
    args.t5_batches = args.t5_batches or ("16" if tiny else "256,2048")
    args.train_steps = args.train_steps if args.train_steps is not None else (20 if tiny else 300)
    args.users = args.users or (32 if tiny else 1024)
    args.decode_batch = args.decode_batch or (16 if tiny else 256)
    args.ours_decode_batches = args.ours_decode_batches if args.ours_decode_batches is not None else ("" if tiny else "1024,4096")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    report = Report(Path(args.out), args)
    data = report.data
    torch.manual_seed(0)

    # --- data, vocabulary, trie (as tiger_vs_hf_t5) ---
    split = load_split(args)
    sids, sizes = semantic_ids_for(split, args)
    vocab = SemanticIdVocab(sids, sizes, user_buckets=2000).to(device)
    trie = SemanticIdTrie(vocab.semantic_ids, vocab.codebook_sizes, device)
    train = split.train_examples
    user_tokens = vocab.user_tokens(split.dataset.user_ids)
    examples = TrainExamples(train.items, train.lengths, user_tokens[train.users], train.targets)
    data["data"] = (f"{split.dataset.name}, {split.n_users} users, {split.n_items} items, {len(examples)} training examples "
                    f"(mean history {float(np.mean(train.lengths)):.1f} items); semantic IDs {args.semantic_ids} {sizes}")
    data["hardware"] = hardware(device)
    data["models"] = {m: GPU_MODELS[m] for m in parse_list(args.models)}
    print(f"data: {data['data']}\nhardware: {data['hardware']}")
    if device.type != "cuda":
        report.skip("CUDA events, TF32, peak GPU memory", f"device is {device.type}")

    # --- 1. matmul peak ---
    data["peak"], data["peak_n"] = {}, args.peak_n
    for precision in ("bf16", "tf32", "fp32"):
        why = precision_skip(precision, device)
        if why:
            report.skip(f"matmul peak {precision}", why)
            continue
        data["peak"][precision] = matmul_peak(precision, device, args.peak_n, 10 if device.type == "cuda" else 3)
        print(f"matmul {args.peak_n}^3 {precision}: {data['peak'][precision] / 1e12:.2f} TFLOP/s")
    report.save()

    # --- 2./3. training, ours ---
    models = parse_list(args.models)
    batch_sizes = parse_list(args.batch_sizes, int)
    precisions = []
    for precision in parse_list(args.precisions):
        why = precision_skip(precision, device)
        if why:
            report.skip(f"training {precision}", why)
        else:
            precisions.append(precision)
    configs = {m: TigerModelConfig(vocab_size=vocab.vocab_size, dropout=0.1, **GPU_MODELS[m]) for m in models}
    n_batches = args.warmup + args.steps
    t5_model = "paper" if "paper" in models else models[0]  # T5 comparison and compile: this model

    def train_model(model_name: str) -> None:
        """Section 2/3 for one model: the grid, then host synchronisation."""
        cfg = configs[model_name]
        for precision in precisions:
            amp = set_precision(precision, device)
            run = None
            for batch_size in batch_sizes:
                what = f"training {model_name} {precision} batch {batch_size}"
                if report.over_budget(what):
                    continue
                if batch_size > len(examples):
                    report.skip(what, f"only {len(examples)} training examples")
                    continue
                batches = epoch_batches(examples, batch_size, 0, 0, True)[:n_batches]
                row = {"model": model_name, "precision": precision, "batch_size": batch_size}
                try:
                    run = run or OurTraining(cfg, vocab, examples, device, amp)
                    if not data.get("flop_check") and len(batches[0]) == batch_size:
                        data["flop_check"] = flop_check(run, batches[0], amp)
                    row.update(time_ours(run, batches, args.warmup))
                except OOM as err:
                    row["error"] = f"out of memory ({str(err).splitlines()[0][:80]})"
                    run = None
                    torch.cuda.empty_cache()
                if "error" not in row:
                    peak = data["peak"].get(precision)
                    row["share_of_peak"] = row["achieved_flops"] / peak if peak else None
                    print(f"{what}: {row['steps_per_s']:.2f} steps/s, {row['examples_per_s']:.0f} examples/s, "
                          f"{row['achieved_flops'] / 1e12:.3f} TFLOP/s = {_fmt(row['share_of_peak'], '.1%')} of the "
                          f"{precision} matmul peak, peak memory {_fmt(row['peak_memory_gb'], '.2f')} GB")
                else:
                    print(f"{what}: {row['error']}")
                data["training"].append(row)
                report.save()
            del run
            if device.type == "cuda":
                torch.cuda.empty_cache()
        # host synchronisation at batch 256 (smallest) and the best batch, in the best precision
        best = best_training(data, model_name, "bf16" if "bf16" in precisions else None) or best_training(data, model_name)
        if best is None:
            return
        precision = best["precision"]
        amp = set_precision(precision, device)
        run = OurTraining(cfg, vocab, examples, device, amp)
        for batch_size in sorted({batch_sizes[0], best["batch_size"]}):
            resident = next((r for r in data["training"] if r["model"] == model_name and r["precision"] == precision
                             and r["batch_size"] == batch_size), None)
            if resident is None or "error" in resident:
                continue
            batches = epoch_batches(examples, batch_size, 0, 0, True)[:n_batches]
            for mode in ("resident", "resident+sync", "host+sync"):
                what = f"host sync {model_name} {precision} batch {batch_size} {mode}"
                if report.over_budget(what):
                    continue
                row = {"model": model_name, "precision": precision, "batch_size": batch_size, "mode": mode}
                row.update(time_ours(run, batches, args.warmup, mode))
                if mode != "resident":  # measured right before it, in the same run: the fair reference
                    prev = [r for r in data["host_sync"] if r["model"] == model_name and r["batch_size"] == batch_size
                            and r["mode"] == "resident"]
                    row["resident_examples_per_s"] = prev[-1]["examples_per_s"] if prev else resident["examples_per_s"]
                print(f"{what}: {row['steps_per_s']:.2f} steps/s, {row['examples_per_s']:.0f} examples/s")
                data["host_sync"].append(row)
                report.save()
        del run

    # --- 4. training, ours vs HF T5 ---
    def t5_section() -> None:
        for precision in [p for p in ("fp32", "bf16") if p in precisions]:
            amp = set_precision(precision, device)
            for batch_size in parse_list(args.t5_batches, int):
                what = f"T5 training {t5_model} {precision} batch {batch_size}"
                if report.over_budget(what):
                    continue
                timed = []
                for index in epoch_batches(examples, batch_size, 1, 0, False)[:args.steps + 2]:
                    input_ids = vocab.encoder_inputs(examples.items[index], examples.lengths[index], examples.user_tokens[index]).to(device)
                    timed.append((input_ids, vocab.target_tokens(examples.targets[index]).to(device)))
                try:
                    seconds = time_training(configs[t5_model], vocab, timed[2:], args.steps, device, amp=amp)
                except OOM as err:
                    report.skip(what, f"out of memory ({str(err).splitlines()[0][:80]})")
                    torch.cuda.empty_cache()
                    continue
                row = {"model": t5_model, "precision": precision, "batch_size": batch_size}
                row.update({f"{k}_steps_per_s": 1 / v for k, v in seconds.items()})
                row["ours_vs_best_t5"] = min(seconds["t5-sdpa"], seconds["t5-eager"]) / seconds["ours"]
                print(f"{what}: ours {row['ours_steps_per_s']:.2f}, T5 sdpa {row['t5-sdpa_steps_per_s']:.2f}, "
                      f"eager {row['t5-eager_steps_per_s']:.2f} steps/s -> {row['ours_vs_best_t5']:.2f}x")
                data["t5_training"].append(row)
                report.save()
                if device.type == "cuda":
                    torch.cuda.empty_cache()

    # --- 5. decoding, ours vs HF generate (fp32, TF32 off: the equality check wants exact-ish scores) ---
    batch = split.eval_batch("test")
    rows = np.arange(min(args.users, split.n_users))

    def decode_model(model_name: str) -> None:
        """Section 5 for one model."""
        set_precision("fp32", device)
        what = f"decoding {model_name}"
        if report.over_budget(what):
            return
        torch.manual_seed(0)
        model = TigerModel(configs[model_name]).to(device)
        train_args = argparse.Namespace(lr=1e-3, batch_size=256 if not tiny else 16, train_steps=args.train_steps)
        loss = train_ours(model, vocab, examples, train_args, device)
        t5 = to_hf_t5(model, PAD, EOS, BOS).to(device).eval()
        chunks = [rows[i:i + args.decode_batch] for i in range(0, len(rows), args.decode_batch)]
        inputs = [vocab.encoder_inputs(batch.items[c], batch.lengths[c], user_tokens[batch.users[c]]).to(device) for c in chunks]
        targets = vocab.target_tokens(batch.targets[chunks[0]]).to(device)
        diff = logit_difference(model, t5, vocab, inputs[0], targets)
        decoded = compare_decoding(model, t5, vocab, trie, inputs, args.beam, device)
        n = len(rows)
        row = {"model": model_name, "users": n, "beam": args.beam, "decode_batch": args.decode_batch,
               "trained_steps": args.train_steps, "train_loss": loss, "max_logit_diff": diff,
               "ours_users_per_s": n / decoded["timings"]["ours"], "hf_users_per_s": n / decoded["timings"]["hf"],
               "identical_top_k": decoded["same_lists"], "identical_top10": decoded["same_top10"]}
        print(f"{what}: {n} users, beam {args.beam}: ours {row['ours_users_per_s']:.0f} users/s, HF generate "
              f"{row['hf_users_per_s']:.1f} users/s; identical top-{args.beam} {row['identical_top_k']:.1%}, "
              f"max |logit diff| {diff:.1e}")
        data["decoding"].append(row)
        report.save()
        del t5
        for decode_batch in parse_list(args.ours_decode_batches, int):
            what = f"decoding {model_name} ours, {decode_batch} users per call"
            if report.over_budget(what):
                continue
            users = np.arange(min(max(decode_batch * 2, args.users), split.n_users))
            calls = [users[i:i + decode_batch] for i in range(0, len(users), decode_batch)]
            ids = [vocab.encoder_inputs(batch.items[c], batch.lengths[c], user_tokens[batch.users[c]]).to(device) for c in calls]
            beam_search(model, vocab, trie, ids[0][:8], args.beam)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            start = time.perf_counter()
            for input_ids in ids:
                beam_search(model, vocab, trie, input_ids, args.beam)
            sync(device)
            seconds = time.perf_counter() - start
            row = {"model": model_name, "users": len(users), "beam": args.beam, "decode_batch": decode_batch,
                   "ours_users_per_s": len(users) / seconds,
                   "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
            print(f"{what}: {row['ours_users_per_s']:.0f} users/s")
            data["decoding"].append(row)
            report.save()
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    # priorities, in case the budget runs out: the paper model first (training grid, host sync, T5, decoding), then the rest
    for i, model_name in enumerate(models):
        train_model(model_name)
        if i == 0:
            t5_section()
        decode_model(model_name)

    # --- 6. torch.compile (optional) ---
    if not args.compile:
        report.skip("torch.compile", "not requested (--compile)")
    elif device.type != "cuda":
        report.skip("torch.compile", "CUDA only here (on this 2-core CPU it was 9x slower: README, TIGER on a CPU)")
    elif not report.over_budget("torch.compile"):
        best = best_training(data, t5_model, "bf16")
        if best is not None:
            amp = set_precision("bf16", device)
            batches = epoch_batches(examples, best["batch_size"], 0, 0, True)[:n_batches + 5]
            try:
                run = OurTraining(configs[t5_model], vocab, examples, device, amp, compile_model=True)
                start = time.perf_counter()
                row = {"model": t5_model, "precision": "bf16", "batch_size": best["batch_size"], "mode": "compile dynamic=True"}
                row.update(time_ours(run, batches, args.warmup + 5))
                row["warmup_and_compile_s"] = time.perf_counter() - start - row["seconds"]
                row["eager_examples_per_s"] = best["examples_per_s"]
                print(f"torch.compile {t5_model} bf16 batch {best['batch_size']}: {row['examples_per_s']:.0f} examples/s "
                      f"(eager {best['examples_per_s']:.0f}); compile + warm-up {row['warmup_and_compile_s']:.0f}s")
                data["compile"].append(row)
            except Exception as err:  # noqa: BLE001 - a compiler failure is a result here
                report.skip("torch.compile", f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
    report.save()
    print("\nratios:")
    for key, value in data["ratios"].items():
        print(f"  {key}: {_fmt(value, '.3g') if isinstance(value, float) else value}")
    print(f"wrote {report.out / 'gpu_speed.json'} and {report.out / 'gpu_speed.md'} ({data['elapsed_s']:.0f}s)")
    return 0


def flop_check(run: OurTraining, index: np.ndarray, amp) -> dict:
    """torch.utils.flop_counter's count of one step over :func:`step_flops` (1.0: they agree)."""
    vocab, device, ex = run.vocab, run.device, run.examples
    width = int(ex.lengths[index].max())
    data = run.data
    rows = torch.from_numpy(index).to(device)
    input_ids = vocab.encoder_inputs(data.items[rows], data.lengths[rows], data.user_tokens[rows], width=width)
    targets = vocab.target_tokens(data.targets[rows])
    counted = counted_flops(run.model, input_ids, vocab.decoder_inputs(targets), targets, amp)
    lengths = ex.lengths[index]
    unpadded = device.type == "cpu" and not bool((lengths == width).all())
    ours = step_flops(run.model.cfg, len(index), 1 + vocab.n_levels * width, vocab.n_levels,
                      int((1 + vocab.n_levels * lengths).sum()) if unpadded else None)
    return {"counter_over_shapes": counted / ours, "counter_gflop": counted / 1e9, "shapes_gflop": ours / 1e9}


if __name__ == "__main__":
    sys.exit(main())
