"""The `bench` CLI contract (issue 29): a user error is one line `bench: error: ...` on stderr and exit
status 2, never a traceback, and nothing half-written. Every subcommand is driven here with malformed
arguments and against malformed results stores (a truncated JSON, `[1,2]`, `{}`, a record without
`metrics`, a binary file); nothing here trains anything but one closed-form Pop run on a tiny
synthetic dataset, and no sweep starts Ray (--dry-run or argument errors only).

Exit statuses: 0 done, 2 user error; 1 only where a command documents it ("nothing to show": a table or
render with no usable run; a sweep with failed trials). A traceback found in a path this file's author
does not own is a strict xfail naming the command, so it shows up the day it is fixed.
"""
from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cli import main
from bench.records import write_record

REPO = Path(__file__).resolve().parent.parent
SMOKE_SWEEP = str(REPO / "sweeps" / "smoke.yaml")
BINARY = b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01\xc3\x28garbage\xa0\xa1"
_ids = itertools.count()


# ---------------------------------------------------------------------- helpers
@dataclass
class Result:
    code: int
    out: str
    err: str


def bench(capsys, *argv, codes=(0, 1, 2)) -> Result:
    """``bench ARGV`` in-process. An uncaught exception propagates and fails the test; argparse's usage
    errors (SystemExit 2) and --help (0) count as exits. No traceback may reach stdout or stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    assert code in codes, (code, err)
    return Result(code, out, err)


def user_error(capsys, *argv, needles=()) -> str:
    """``bench ARGV`` must fail with one `bench: error: ...` line (exit 2) holding every needle."""
    result = bench(capsys, *argv, codes=(2,))
    lines = [line for line in result.err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), result.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def usage_error(capsys, *argv, needles=()) -> str:
    """An argparse usage error: exit 2, the last line `bench ...: error: ...` holding every needle."""
    result = bench(capsys, *argv, codes=(2,))
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("bench") and ": error: " in last, result.err
    for needle in needles:
        assert needle in last, last
    return last


def record(dataset="synthetic", label="TIGER[letter]", method="tiger", seed=1, ndcg=0.03, alpha=0.02, **extra):
    config = {"method": method, "dataset": dataset, "seed": seed,
              "tokenizer": {"name": "letter", "letter": {"alpha": alpha}}}
    return {"run_id": f"c{next(_ids):04d}", "label": label, "method": method, "dataset": dataset, "seed": seed,
            "status": "completed", "config": config,
            "metrics": {"test": {"recall@10": 2 * ndcg, "ndcg@10": ndcg}, "valid": {"ndcg@10": ndcg}},
            "method_info": {"tokenizer": {"first_level_counts": [5, 3, 0, 2]}}, **extra}


def good_records() -> list[dict]:
    """Two alpha values x two seeds of LETTER and a baseline: every table, curve and histogram has rows."""
    runs = [record(alpha=alpha, seed=seed, ndcg=base + 0.001 * seed)
            for alpha, base in ((0.01, 0.03), (0.1, 0.04)) for seed in (1, 2)]
    runs.append(record(label="SASRec (CE)", method="sasrec", ndcg=0.02))
    return runs


NO_METRICS_ID = "zz-no-metrics"


def malformed_files() -> dict[str, bytes]:
    """file name -> content of each kind of damage a store can hold."""
    full = json.dumps(record(run_id="cut"), indent=1).encode()
    no_metrics = record(run_id=NO_METRICS_ID, label="TIGER[lsh]")
    no_metrics.pop("metrics")
    return {"truncated.json": full[: len(full) // 2], "list.json": b"[1, 2]", "empty-object.json": b"{}",
            f"{NO_METRICS_ID}.json": json.dumps(no_metrics).encode(), "binary.json": BINARY}


KINDS = list(malformed_files())


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """``good``: usable records only; ``mixed``: those plus every kind of damage; ``only:<file>``: one
    damaged file alone; ``empty``: an empty folder."""
    root = tmp_path_factory.mktemp("stores")
    folders = {"good": root / "good", "mixed": root / "mixed", "empty": root / "empty"}
    folders["empty"].mkdir()
    for name in ("good", "mixed"):
        for run in good_records():
            write_record(run, folders[name])
    for name, content in malformed_files().items():
        (folders["mixed"] / name).write_bytes(content)
        alone = root / f"only-{Path(name).stem}"
        alone.mkdir()
        (alone / name).write_bytes(content)
        folders[f"only:{name}"] = alone
    return folders


@pytest.fixture
def damaged(stores, tmp_path) -> dict[str, Path]:
    """Each damaged file, as a path of its own (for `bench publish FILE` and `--run FILE`)."""
    return {name: Path(shutil.copy(stores[f"only:{name}"] / name, tmp_path / name)) for name in KINDS}


# ---------------------------------------------------------------------- the top level
def test_no_command_and_an_unknown_command_are_usage_errors(capsys):
    usage_error(capsys, needles=["COMMAND"])
    usage_error(capsys, "nope", needles=["invalid choice"])
    usage_error(capsys, "table", "--no-such-option")


# ---------------------------------------------------------------------- publish
@pytest.mark.parametrize("name", ["truncated.json", "list.json", "empty-object.json", "binary.json"])
def test_publish_refuses_a_file_that_is_not_a_record(capsys, damaged, tmp_path, name):
    user_error(capsys, "publish", damaged[name], "--to", tmp_path / "published", needles=[name])
    assert not (tmp_path / "published").exists() or not list((tmp_path / "published").iterdir())


def test_publish_messages_say_what_is_wrong(capsys, damaged, tmp_path):
    to = ["--to", tmp_path / "published"]
    user_error(capsys, "publish", damaged["truncated.json"], *to, needles=["not a readable JSON record", "cut short"])
    user_error(capsys, "publish", damaged["list.json"], *to, needles=["not a run record", "list"])
    user_error(capsys, "publish", damaged["empty-object.json"], *to, needles=["not a run record", "no run_id"])
    user_error(capsys, "publish", damaged[f"{NO_METRICS_ID}.json"], *to, needles=[NO_METRICS_ID])


def test_publish_other_malformed_records_and_arguments(capsys, tmp_path):
    to = ["--to", tmp_path / "published"]
    cases = {"only-run-id.json": {"run_id": "x"}, "schema-7.json": {"run_id": "x", "schema_version": 7},
             "escaping-id.json": {**record(), "run_id": "../../outside", "schema_version": 1}}
    for name, payload in cases.items():
        (tmp_path / name).write_text(json.dumps(payload))
        user_error(capsys, "publish", tmp_path / name, *to, needles=[name])
    user_error(capsys, "publish", "no-such-run", "--from", tmp_path / "nowhere", *to, needles=["no-such-run"])
    usage_error(capsys, "publish")
    assert not (tmp_path / "published").exists() and not (tmp_path.parent / "outside.json").exists()


def test_publish_names_an_unwritable_target(capsys, tmp_path):
    source = next((REPO / "results" / "published").glob("*.json"), None)
    if source is None:
        pytest.skip("no published record in this checkout")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    user_error(capsys, "publish", source, "--to", blocker / "store", needles=["--to", str(blocker / "store")])
    bench(capsys, "publish", source, "--to", tmp_path / "store", "--allow-smoke", codes=(0,))
    again = bench(capsys, "publish", source, "--to", tmp_path / "store", "--allow-smoke", codes=(0,))
    assert "already published" in again.out


# ---------------------------------------------------------------------- table
@pytest.mark.parametrize("alpha", ["2", "-1", "0", "1", "nan", "inf", "abc"])
def test_table_alpha_outside_zero_one_is_refused(capsys, stores, alpha):
    usage_error(capsys, "table", "--results-dir", stores["good"], f"--alpha={alpha}", needles=["--alpha"])


def test_table_alpha_inside_zero_one_is_used(capsys, stores):
    bench(capsys, "table", "--results-dir", stores["good"], "--alpha", "0.2", codes=(0,))
    published = REPO / "results" / "published"
    if not any(published.glob("*.json")):
        pytest.skip("no published records (with per-user ranks) in this checkout")
    result = bench(capsys, "table", "--results-dir", published, "--alpha", "0.01", codes=(0,))
    assert "p < 0.01" in result.out


def test_every_command_taking_alpha_refuses_it_out_of_range(capsys):
    """A command that grows an --alpha must check it too (one shared argparse type)."""
    from bench.cli import build_parser

    parser = build_parser()
    takers = []
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        options = {o for action in sub._actions for o in action.option_strings}
        if "--alpha" in options:
            takers.append(name)
    assert takers, "no command takes --alpha any more: drop this test"
    for name in takers:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--alpha", "2"])
        assert exit_.value.code == 2
        assert "--alpha" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["main", "tokenizers", "simple", "coldstart", "diversity", "invalid"])
@pytest.mark.parametrize("store", ["mixed", "empty"] + [f"only:{name}" for name in KINDS])
def test_table_against_malformed_stores(capsys, stores, kind, store):
    result = bench(capsys, "table", "--kind", kind, "--results-dir", stores[store])
    if store == "mixed" and kind in ("main", "tokenizers", "simple"):
        assert result.code == 0
    if store.startswith("only:") or store == "empty":
        assert result.code == 1  # nothing to show; each damaged file named on stderr


def test_table_kinds_with_params_against_a_malformed_store(capsys, stores):
    mixed = ["--results-dir", stores["mixed"]]
    bench(capsys, "table", "--kind", "ablation", "--param", "tokenizer.letter.alpha", *mixed, codes=(0,))
    bench(capsys, "table", "--kind", "sweep", "--spec", "smoke", *mixed, codes=(1,))
    user_error(capsys, "table", "--kind", "sweep", *mixed, needles=["--spec"])
    user_error(capsys, "table", "--kind", "ablation", *mixed, needles=["--param"])
    user_error(capsys, "table", "--kind", "sweep", "--spec", "nope", *mixed, needles=["nope"])
    user_error(capsys, "table", "--metrics", "recal@10", *mixed, needles=["recal@10", "recall@10"])
    user_error(capsys, "table", "--where", "nonsense", *mixed, needles=["--where"])
    usage_error(capsys, "table", "--kind", "nope", *mixed)
    usage_error(capsys, "table", "--format", "docx", *mixed)


def test_a_record_without_metrics_is_named_and_left_out(capsys, stores):
    result = bench(capsys, "table", "--kind", "tokenizers", "--results-dir", stores["mixed"], codes=(0,))
    assert "LSH" not in result.out  # the record without metrics used to be a row of dashes
    assert f"{NO_METRICS_ID}.json" in result.err and "no metrics" in result.err
    for name in ("truncated.json", "list.json", "empty-object.json", "binary.json"):
        assert name in result.err


def test_table_of_a_missing_folder_says_so(capsys, tmp_path):
    user_error(capsys, "table", "--results-dir", tmp_path / "nonexistent",
               needles=["--results-dir", "nonexistent", "no such folder"])
    (tmp_path / "a-file").write_text("")
    user_error(capsys, "table", "--results-dir", tmp_path / "a-file", needles=["not a folder"])


@pytest.mark.parametrize("scratch", ["missing", "empty"])
def test_a_fresh_clone_is_pointed_at_the_published_store(capsys, tmp_path, monkeypatch, scratch):
    monkeypatch.chdir(tmp_path)
    if scratch == "empty":
        (tmp_path / "results" / "runs").mkdir(parents=True)
    for kind in ("main", "simple"):
        result = bench(capsys, "table", "--kind", kind, codes=(1,))
        assert "bench table --results-dir results/published" in result.out and "bench render" in result.out


@pytest.mark.parametrize("output", ["/proc/x/out.md", "{file}/x/out.md", "{tmp}"])
def test_table_output_errors_name_the_option_and_path(capsys, stores, tmp_path, output):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    output = output.format(file=blocker, tmp=tmp_path)
    if output.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    user_error(capsys, "table", "--results-dir", stores["good"], "--output", output, needles=["--output", output])
    written = bench(capsys, "table", "--results-dir", stores["good"], "--output", tmp_path / "t" / "main.md",
                    codes=(0,))
    assert (tmp_path / "t" / "main.md").read_text().startswith("**Main results")
    assert "wrote" in written.out


# ---------------------------------------------------------------------- plot
def test_plot_unknown_format_names_the_supported_ones(capsys, stores, tmp_path):
    out = tmp_path / "x.xyz"
    for kind in (["curve", "--param", "tokenizer.letter.alpha"], ["codes"], ["coldstart"]):
        user_error(capsys, "plot", *kind, "--results-dir", stores["good"], "--output", out,
                   needles=["--output", "xyz", ".png", ".pdf", ".svg"])
    assert not out.exists()


def test_plot_unknown_metric_is_named_as_such(capsys, stores, tmp_path):
    line = user_error(capsys, "plot", "curve", "--param", "tokenizer.letter.alpha", "--metric", "recal@10",
                      "--results-dir", stores["good"], "--output", tmp_path / "c.png",
                      needles=["--metric", "recal@10", "recall@10", "ndcg@10"])
    assert "config has" not in line  # it used to blame --param
    user_error(capsys, "plot", "curve", "--param", "model.nope", "--results-dir", stores["good"],
               "--output", tmp_path / "c.png", needles=["model.nope"])
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("store", ["mixed", "empty"] + [f"only:{name}" for name in KINDS])
def test_plot_against_malformed_stores(capsys, stores, tmp_path, store):
    common = ["--results-dir", stores[store]]
    curve = bench(capsys, "plot", "curve", "--param", "tokenizer.letter.alpha", *common, "--output", tmp_path / "c.png")
    codes = bench(capsys, "plot", "codes", *common, "--output", tmp_path / "h.png")
    bench(capsys, "plot", "coldstart", *common, "--output", tmp_path / "k.png", codes=(2,))
    if store == "mixed":
        assert curve.code == 0 and codes.code == 0 and (tmp_path / "c.png").is_file()


def test_plot_missing_store_and_bad_output_paths(capsys, stores, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    curve = ["plot", "curve", "--param", "tokenizer.letter.alpha"]
    user_error(capsys, *curve, "--results-dir", tmp_path / "nonexistent", "--output", tmp_path / "c.png",
               needles=["--results-dir", "no such folder"])
    user_error(capsys, *curve, "--results-dir", stores["good"], "--output", blocker / "c.png",
               needles=["--output", str(blocker / "c.png")])
    user_error(capsys, *curve, "--results-dir", stores["good"], "--output", tmp_path, needles=["--output"])
    if Path("/proc").is_dir():
        user_error(capsys, *curve, "--results-dir", stores["good"], "--output", "/proc/x/out.png",
                   needles=["--output", "/proc/x/out.png"])


def test_plot_codes_with_damaged_inputs(capsys, stores, damaged, tmp_path):
    import numpy as np

    out = ["--output", tmp_path / "h.png"]
    np.save(tmp_path / "codes.npy", np.arange(30).reshape(10, 3) % 4)
    np.save(tmp_path / "floats.npy", np.random.default_rng(0).random((4, 2)))
    np.save(tmp_path / "negative.npy", -np.ones((4, 2), dtype=np.int64))
    (tmp_path / "junk.npy").write_bytes(BINARY)
    (tmp_path / "dict.json").write_text('{"x": 1}')
    (tmp_path / "cut.json").write_text("[[1, 2], [3")
    for name in ("floats.npy", "negative.npy", "junk.npy", "dict.json", "cut.json", "missing.npy"):
        user_error(capsys, "plot", "codes", "--codes", tmp_path / name, *out, needles=[name])
    user_error(capsys, "plot", "codes", "--codes", tmp_path / "codes.npy", "--level", "3", *out, needles=["--level"])
    user_error(capsys, "plot", "codes", "--codes", tmp_path / "codes.npy", "--level", "-1", *out, needles=["--level"])
    user_error(capsys, "plot", "codes", "--codes", tmp_path / "codes.npy", "--codebook-size", "-3", *out,
               needles=["--codebook-size"])
    usage_error(capsys, "plot", "codes", "--level", "x", *out)
    for name in ("truncated.json", "list.json", "empty-object.json", "binary.json"):
        user_error(capsys, "plot", "codes", "--run", damaged[name], "--results-dir", stores["good"], *out, needles=[name])
    user_error(capsys, "plot", "codes", "--run", "no-such-run", "--results-dir", stores["mixed"], *out,
               needles=["no-such-run"])
    assert not (tmp_path / "h.png").exists()
    bench(capsys, "plot", "codes", "--codes", f"{tmp_path / 'codes.npy'}=LSH", *out, codes=(0,))
    usage_error(capsys, "plot")
    usage_error(capsys, "plot", "curve", "--output", tmp_path / "c.png")  # --param is required


# ---------------------------------------------------------------------- render
@pytest.mark.parametrize("store", ["mixed", "empty"] + [f"only:{name}" for name in KINDS])
def test_render_against_malformed_stores(capsys, stores, tmp_path, store):
    bench(capsys, "select", "--results-dir", stores[store], "--out", tmp_path / "out")
    result = bench(capsys, "render", "--results-dir", stores[store], "--out", tmp_path / "out")
    assert result.code == (0 if store == "mixed" else 1)


def test_render_summary_counts_read_used_and_skipped(capsys, stores, tmp_path):
    bench(capsys, "select", "--results-dir", stores["mixed"], "--out", tmp_path / "out", codes=(0,))
    result = bench(capsys, "render", "--results-dir", stores["mixed"], "--out", tmp_path / "out", codes=(0,))
    summary = result.out.splitlines()[0]
    used, read = len(good_records()), len(good_records()) + len(KINDS)
    assert f"{read} record files read" in summary and f"{used} used" in summary, summary
    assert f"{len(KINDS)} skipped" in summary, summary
    assert "not a readable JSON record: 2" in summary and "not a run record: 2" in summary, summary
    assert f"completed without metrics: 1 ({NO_METRICS_ID}.json)" in summary, summary
    for name in KINDS:
        assert name in result.err
    only = bench(capsys, "render", "--results-dir", stores["only:binary.json"], "--out", tmp_path / "o2", codes=(1,))
    assert "1 record file read" in only.out and "0 used, 1 skipped" in only.out and "binary.json" in only.out
    assert not (tmp_path / "o2").exists()


def test_render_missing_store_and_bad_out(capsys, stores, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    user_error(capsys, "render", "--results-dir", tmp_path / "nonexistent", "--out", tmp_path / "out",
               needles=["--results-dir", "no such folder"])
    user_error(capsys, "render", "--results-dir", stores["good"], "--out", blocker, needles=["--out", str(blocker)])
    user_error(capsys, "render", "--results-dir", stores["good"], "--out", blocker / "x",
               needles=["--out", str(blocker / "x")])
    if Path("/proc").is_dir():
        user_error(capsys, "render", "--results-dir", stores["good"], "--out", "/proc/x", needles=["--out", "/proc/x"])
    user_error(capsys, "render", "--results-dir", stores["good"], "--out", tmp_path / "out", "--prune",
               "--dataset", "synthetic", needles=["--prune"])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- run, data, tokenize, cf-embed, sweep
def _bad_data(tmp_path) -> tuple[Path, Path]:
    """A data folder whose beauty files are binary, and one whose items.jsonl is cut short."""
    binary, truncated = tmp_path / "binary-data", tmp_path / "truncated-data"
    for folder in (binary, truncated):
        (folder / "beauty").mkdir(parents=True)
    (binary / "beauty" / "sequences.txt").write_bytes(BINARY)
    (binary / "beauty" / "items.jsonl").write_bytes(BINARY)
    (truncated / "beauty" / "sequences.txt").write_text("1 2 3\n2 3 4\n")
    (truncated / "beauty" / "items.jsonl").write_text('{"item_id": 1, "tit')
    return binary, truncated


def _config_files(tmp_path) -> dict[str, Path]:
    files = {"truncated.yaml": b"a: [1, 2\n", "list.yaml": b"[1, 2]\n", "binary.yaml": BINARY}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return {name: tmp_path / name for name in files}


RUN_SMOKE = ["run", "--baseline", "pop", "--dataset", "synthetic", "--profile", "smoke"]
CONFIG_COMMANDS = {
    "run": RUN_SMOKE,
    "tokenize": ["tokenize", "--tokenizer", "random_id", "--dataset", "synthetic", "--profile", "smoke"],
    "cf-embed": ["cf-embed", "--dataset", "synthetic", "--profile", "smoke"],
}


@pytest.mark.parametrize("command", list(CONFIG_COMMANDS))
@pytest.mark.parametrize("config", ["truncated.yaml", "list.yaml", "missing.yaml", "binary.yaml"])
def test_config_commands_with_a_malformed_config_file(capsys, tmp_path, command, config):
    _config_files(tmp_path)
    user_error(capsys, *CONFIG_COMMANDS[command], "--config", tmp_path / config, "--set", f"work_dir={tmp_path}/w",
               needles=[config])
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("command", list(CONFIG_COMMANDS))
def test_config_commands_with_malformed_arguments(capsys, tmp_path, command):
    argv = CONFIG_COMMANDS[command]
    work = ["--set", f"work_dir={tmp_path}/w"]
    user_error(capsys, *argv, "--set", "garbage", needles=["garbage"])
    user_error(capsys, *argv, "--set", "nope.key=1", *work, needles=["nope"])
    user_error(capsys, *argv, "--set", "seed=abc", *work, needles=["seed"])
    user_error(capsys, *argv, "--dataset", "nope", *work, needles=["nope"])
    usage_error(capsys, *argv, "--profile", "nope", needles=["--profile"])
    assert not list(tmp_path.rglob("*.json"))


def test_run_with_malformed_arguments(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = ["--results-dir", tmp_path / "runs"]
    user_error(capsys, "run", "--baseline", "nope", "--dataset", "synthetic", *store, needles=["nope"])
    user_error(capsys, "run", "--tokenizer", "nope", "--dataset", "synthetic", *store, needles=["nope"])
    usage_error(capsys, "run", "--baseline", "pop", "--tokenizer", "lsh", needles=["not allowed"])
    user_error(capsys, *RUN_SMOKE, "--results-dir", blocker, needles=[str(blocker)])
    user_error(capsys, *RUN_SMOKE, "--results-dir", blocker / "runs", needles=[str(blocker)])
    user_error(capsys, "run", "--tokenizer", "random_id", "--dataset", "synthetic", "--profile", "smoke", *store,
               "--resume", tmp_path / "nowhere", needles=["nowhere"])
    user_error(capsys, "run", "--tokenizer", "random_id", "--dataset", "synthetic", "--profile", "smoke", *store,
               "--resume", blocker, needles=[str(blocker)])
    user_error(capsys, *RUN_SMOKE, "--resume", tmp_path, *store, needles=["--resume"])
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


def test_run_writes_into_a_store_that_holds_damaged_files(capsys, stores, tmp_path):
    """The one training case: closed-form Pop on a tiny synthetic dataset, seconds."""
    store = tmp_path / "runs"
    shutil.copytree(stores["mixed"], store)
    bench(capsys, *RUN_SMOKE, "--results-dir", store, "--set", "data.synthetic.n_users=60",
          "data.synthetic.n_items=30", f"work_dir={tmp_path}/w", codes=(0,))
    assert len(list(store.glob("*.json"))) == len(good_records()) + len(KINDS) + 1


@pytest.mark.parametrize("command", ["run", "data", "tokenize", "cf-embed"])
@pytest.mark.parametrize("data", ["binary", "truncated", "missing"])
def test_data_commands_against_malformed_data(capsys, tmp_path, command, data):
    binary, truncated = _bad_data(tmp_path)
    folder = {"binary": binary, "truncated": truncated, "missing": tmp_path / "nowhere"}[data]
    argv = {"run": ["run", "--baseline", "pop", "--dataset", "beauty", "--profile", "smoke",
                    "--results-dir", tmp_path / "runs"],
            "data": ["data", "stats", "beauty"],
            "tokenize": ["tokenize", "--tokenizer", "random_id", "--dataset", "beauty", "--profile", "smoke"],
            "cf-embed": ["cf-embed", "--dataset", "beauty", "--profile", "smoke"]}[command]
    user_error(capsys, *argv, "--data-dir", folder, needles=[folder.name])
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


def test_data_with_malformed_arguments(capsys, tmp_path):
    usage_error(capsys, "data", needles=["ACTION"])
    usage_error(capsys, "data", "stats")
    user_error(capsys, "data", "stats", "nope", needles=["nope"])
    user_error(capsys, "data", "download", "nope", needles=["nope"])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    user_error(capsys, "data", "stats", "beauty", "--data-dir", blocker, needles=[str(blocker)])


def test_sweep_with_malformed_arguments_and_specs(capsys, tmp_path):
    """Argument errors and --dry-run only: Ray never starts."""
    store = ["--results-dir", tmp_path / "runs"]
    specs = _config_files(tmp_path)
    user_error(capsys, "sweep", "nope", "--dry-run", *store, needles=["nope"])
    user_error(capsys, "sweep", specs["list.yaml"], "--dry-run", *store, needles=["list.yaml"])
    user_error(capsys, "sweep", specs["binary.yaml"], "--dry-run", *store, needles=["binary.yaml"])
    bench(capsys, "sweep", specs["truncated.yaml"], "--dry-run", *store, codes=(2,))  # one line: see below
    user_error(capsys, "sweep", SMOKE_SWEEP, "--budget", "nope", "--dry-run", *store, needles=["nope"])
    user_error(capsys, "sweep", SMOKE_SWEEP, "--num-samples", "-1", "--dry-run", *store, needles=["num_samples"])
    user_error(capsys, "sweep", SMOKE_SWEEP, "--metric", "test_ndcg@10", "--dry-run", *store, needles=["test_ndcg@10"])
    user_error(capsys, "sweep", SMOKE_SWEEP, "--set", "garbage", "--dry-run", *store, needles=["garbage"])
    usage_error(capsys, "sweep", SMOKE_SWEEP, "--seeds", "a,b", "--dry-run", needles=["--seeds"])
    usage_error(capsys, "sweep", SMOKE_SWEEP, "--profile", "nope", "--dry-run", needles=["--profile"])
    usage_error(capsys, "sweep", SMOKE_SWEEP, "--search", "nope", "--dry-run", needles=["--search"])
    usage_error(capsys, "sweep", SMOKE_SWEEP, "--num-samples", "x", "--dry-run", needles=["--num-samples"])
    usage_error(capsys, "sweep", needles=["spec"])
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


def test_sweep_spec_with_a_yaml_syntax_error_is_one_line(capsys, tmp_path):
    specs = _config_files(tmp_path)
    user_error(capsys, "sweep", specs["truncated.yaml"], "--dry-run", "--results-dir", tmp_path / "runs",
               needles=["truncated.yaml"])


@pytest.mark.parametrize("store", ["mixed", "empty"] + [f"only:{name}" for name in KINDS])
def test_sweep_dry_run_against_malformed_stores(capsys, stores, tmp_path, store):
    copy = tmp_path / "runs"
    shutil.copytree(stores[store], copy)
    result = bench(capsys, "sweep", SMOKE_SWEEP, "--results-dir", copy, "--dry-run",
                   "--set", f"work_dir={tmp_path}/w", codes=(0,))
    assert "would run" in result.out
    for name in KINDS:
        if name in {p.name for p in copy.iterdir()} and name != f"{NO_METRICS_ID}.json":
            assert name in result.err  # named, then skipped
