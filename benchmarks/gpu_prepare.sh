#!/usr/bin/env bash
# Fills benchmarks/gpu_payload/ (git-ignored) with what benchmarks/gpu_beauty.sh needs on a GPU machine
# that has PyTorch, transformers, sentence-transformers, numpy, pandas, scipy, ... but no network and
# none of pydantic, k-means-constrained/ortools, RecBole, Ray, Optuna, jsonschema or the MiniLM weights:
#
#   wheels.tar.xz          the missing packages as wheels for the device's Python (cp312, manylinux x86_64),
#                          versions pinned to this machine's .venv, re-zipped uncompressed then xz'd
#   data/beauty.tar.xz     Amazon Beauty: sequences.txt + items.jsonl
#   cache/embeddings/      the cached all-MiniLM-L6-v2 embeddings of Beauty's item texts (never recomputed
#                          here: they must be in this machine's cache, as `bench run ... --dataset beauty` left them)
#   cache/cf_embed/        LETTER's CF item embeddings (SASRec on the training parts), from this machine's cache
#   manifest.json          sha256 of everything, the settings and package versions that made the caches,
#                          the git commit and code hash, the sizes
#
# Run here, on the CPU, with network for pip (a few seconds of downloads, ~3 min of xz on one core):
#   bash benchmarks/gpu_prepare.sh [--python-version 3.12] [--payload DIR] [--data-dir DIR]
# then, in a session with a device: run(command="bash benchmarks/gpu_beauty.sh",
#                                        carry=["benchmarks/gpu_payload"], timeout_s=480)
# A payload for a CPU rehearsal in a venv of this machine's Python: --python-version 3.11 --payload /tmp/payload311
# (see benchmarks/gpu_beauty.sh). PYTHON (default .venv/bin/python) must be the project's full environment:
# it computes the cache keys (RecBole's version is part of the CF key) and the pinned versions.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
PYVER=3.12
PAYLOAD="$ROOT/benchmarks/gpu_payload"
DATA="${BENCH_DATA_DIR:-$ROOT/../shared/data/amazon2014}"
LIMIT=$(( 64 * 1024 * 1024 ))   # the device tool's limit on working tree + carried paths
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) PYVER="$2"; shift 2 ;;
        --payload) PAYLOAD="$2"; shift 2 ;;
        --data-dir) DATA="$2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "gpu_prepare.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
DATA="$(cd "$DATA" && pwd)"
[ -f "$DATA/beauty/sequences.txt" ] && [ -f "$DATA/beauty/items.jsonl" ] || { echo "no Beauty folder at $DATA/beauty" >&2; exit 2; }
H() { bash "$HERE/gpu_beauty.sh" --helper "$@"; }
export PYTHON="$PY"

TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
rm -rf "$PAYLOAD"; mkdir -p "$PAYLOAD/data" "$PAYLOAD/cache/embeddings" "$PAYLOAD/cache/cf_embed" "$TMP/dl" "$TMP/stored"
echo "== payload $PAYLOAD for cp${PYVER/./} (data $DATA, keys from $PY)"

# ---------------------------------------------------------------- wheels, pinned to the versions tested here
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions k-means-constrained ortools immutabledict six
          recbole colorlog colorama texttable)
PINS=()
for name in "${PACKAGES[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    PINS+=("$name==$version")
done
echo "== downloading ${PINS[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$TMP/dl" "${PINS[@]}" 2>&1 | grep -v "is ignored" || true
[ "$(ls "$TMP/dl"/*.whl | wc -l)" = ${#PINS[@]} ] || { echo "expected ${#PINS[@]} wheels, got: $(ls "$TMP/dl")" >&2; exit 1; }
for wheel in "$TMP/dl"/*.whl; do H stored-wheel "$wheel" "$TMP/stored/$(basename "$wheel")"; done
echo "== xz of the wheels (~2 min on one core)"
tar -C "$TMP/stored" -cf - . | nice xz -T1 -9 > "$PAYLOAD/wheels.tar.xz"

# ---------------------------------------------------------------- data
tar -C "$DATA" -cf - beauty/sequences.txt beauty/items.jsonl | nice xz -T1 -9 > "$PAYLOAD/data/beauty.tar.xz"

# ---------------------------------------------------------------- caches and the manifest
echo "== the cached text and CF embeddings of Beauty (from this machine's cache), manifest"
H code-sha256 "$ROOT" > "$TMP/code_sha256"
(cd "$ROOT" && git rev-parse HEAD 2>/dev/null || echo unknown) > "$TMP/commit"
(cd "$ROOT" && git status --porcelain --untracked-files=all -- bench tokenizers_zoo recommenders baselines sweeps pyproject.toml 2>/dev/null || true) > "$TMP/status"
bash "$HERE/gpu_beauty.sh" --write-helper "$TMP/helper.py"
PYTHONPATH="$ROOT" OMP_NUM_THREADS=1 nice "$PY" - "$ROOT" "$DATA" "$PAYLOAD" "$TMP" "$TMP/helper.py" <<'EOF'
import importlib.util, json, shutil, sys
from pathlib import Path
root, data, payload, tmp, helper = (Path(a) for a in sys.argv[1:6])
spec = importlib.util.spec_from_file_location("helper", helper); h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h)

from baselines.cf_embed import cache_key as cf_key, cf_embeddings_dir, cf_settings
from baselines.recbole_data import PACKAGES as RECBOLE_PACKAGES
from bench.config import resolve_config
from bench.data import load_dataset
from bench.embed import cache_path, embedding_spec, load_cached
from bench.identity import package_versions_of
from bench.split import LeaveOneOutSplit

dataset = load_dataset("beauty", str(data))
manifest = {"made_by": "benchmarks/gpu_prepare.sh", "python_version": None,
            "git": {"commit": (tmp / "commit").read_text().strip(),
                    "dirty": bool((tmp / "status").read_text().strip()),
                    "changed_code_files": (tmp / "status").read_text().splitlines()},
            "code_sha256": (tmp / "code_sha256").read_text().strip()}
manifest["data"] = {"source": str(data / "beauty"),
                    "sha256": {n: h.sha256(data / "beauty" / n) for n in ("sequences.txt", "items.jsonl")},
                    "users": dataset.n_users, "items": dataset.n_items}

# text embeddings: the file this machine's cache holds for the default embed settings
config = resolve_config("gpu", [], [], {"method": "tiger", "tokenizer": {"name": "rqvae"}, "dataset": "beauty"})
espec = embedding_spec(dataset, config)
path = cache_path(dataset, config, espec)
if load_cached(path, espec) is None:
    raise SystemExit(f"no cached Beauty text embeddings at {path} (this machine's key): run a Beauty tokenizer "
                     "here first (e.g. bench tokenize --tokenizer rqvae --dataset beauty --profile smoke); they are "
                     "carried, never computed on the device")
array = h.pack_array(path, payload / "cache" / "embeddings" / (path.name + ".planes.xz"))
shutil.copy2(path.with_suffix(".json"), payload / "cache" / "embeddings" / path.with_suffix(".json").name)
manifest["embeddings"] = {"file": path.name, "sidecar": path.with_suffix(".json").name, "array": array,
                          "key": espec["key"], "model": espec["model"], "packages": espec["packages"],
                          "template": espec["template"], "texts_sha256": espec["texts_sha256"]}

# CF embeddings: the cached folder whose key matches a profile's CF settings (gpu first)
split = LeaveOneOutSplit(dataset, max_history=int(config["split"]["max_history"]))
found = None
for profile in ("gpu", "cpu", "paper", "smoke"):
    cfg = resolve_config(profile, [], [], {"method": "tiger", "tokenizer": {"name": "letter"}, "dataset": "beauty"})
    folder = cf_embeddings_dir(split, cfg)
    if (folder / "item_embeddings.npy").is_file():
        found = (profile, cfg, folder)
        break
if found is None:
    raise SystemExit("no cached Beauty CF embeddings in this machine's cache for the gpu, cpu, paper or smoke "
                     "profile's settings (bench cf-embed --dataset beauty --profile cpu makes them)")
profile, cfg, folder = found
settings = cf_settings(cfg)
settings.pop("verbose", None)
array = h.pack_array(folder / "item_embeddings.npy", payload / "cache" / "cf_embed" / "item_embeddings.npy.planes.xz")
shutil.copy2(folder / "info.json", payload / "cache" / "cf_embed" / "info.json")
manifest["cf"] = {"folder": folder.name, "key": cf_key(split, cfg), "profile": profile, "seed": int(cfg["seed"]),
                  "settings": settings, "split_sha256": split.fingerprint["sha256"],
                  "packages": package_versions_of(RECBOLE_PACKAGES), "array": array}
print(f"  text embeddings {path.name} ({espec['model']}, {', '.join(f'{k} {v}' for k, v in espec['packages'].items())})")
print(f"  CF embeddings {folder.name}: the {profile} profile's CF settings, seed {cfg['seed']}")

manifest["wheels"] = {}
for wheel in sorted((tmp / "stored").glob("*.whl")):
    name, version, _ = h.wheel_metadata(wheel)
    manifest["wheels"][wheel.name] = {"name": name, "version": version, "sha256_stored": h.sha256(wheel),
                                      "sha256_pypi": h.sha256(tmp / "dl" / wheel.name)}
(payload / "manifest.json").write_text(json.dumps(manifest, indent=1))
EOF
"$PY" - "$PAYLOAD/manifest.json" "$PYVER" <<'EOF'
import json, sys
path, version = sys.argv[1:3]
m = json.load(open(path)); m["python_version"] = version
json.dump(m, open(path, "w"), indent=1)
EOF

# ---------------------------------------------------------------- sizes against the device's 64 MiB
payload_bytes=$(du -sb "$PAYLOAD" | cut -f1)
tree_bytes=$(cd "$ROOT" && git ls-files -co --exclude-standard -z | "$PY" -c "import os, sys
print(sum(os.path.getsize(p) for p in sys.stdin.buffer.read().decode().split(chr(0)) if p and os.path.isfile(p)))")
echo "== sizes (bytes)"
(cd "$PAYLOAD" && find . -type f -printf '%s\t%p\n' | sort -k2 | sed 's/^/  /')
printf '  payload %s + working tree %s (tracked and untracked, not ignored) = %s of %s\n' \
    "$payload_bytes" "$tree_bytes" "$(( payload_bytes + tree_bytes ))" "$LIMIT"
if [ $(( payload_bytes + tree_bytes )) -gt $LIMIT ]; then
    echo "TOO LARGE for one device call: the working tree grew (results/?) or the payload did" >&2; exit 1
fi
echo "  margin $(( (LIMIT - payload_bytes - tree_bytes) / 1024 )) KiB"

# ---------------------------------------------------------------- the plan for the device (estimates of an H200)
echo "== plan (bash benchmarks/gpu_beauty.sh --plan; add --set ... to try other tokenizer budgets)"
bash "$HERE/gpu_beauty.sh" --plan --payload "$PAYLOAD" || echo "== the payload is ready, but the plan above does not fit one 480-s call as it stands"
