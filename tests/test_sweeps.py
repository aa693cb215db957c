"""Sweep specs and the Ray Tune launcher: grid, Optuna, re-runs, failing trials, a Ray head.

The Ray tests share one local Ray session (started once for the module; the launcher reuses a
connected session) and run `pop`/`random` on a small synthetic dataset, two trials at a time.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import ConfigError, resolve_config, with_values
from sweeps.spec import load_spec, parse_spec, resolve_trial_config, shipped_specs, trial_key

REPO = Path(__file__).resolve().parent.parent
SMOKE = str(REPO / "sweeps" / "smoke.yaml")


def records(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


def sweep_args(tmp_path, *extra) -> list[str]:
    return ["sweep", SMOKE, "--results-dir", str(tmp_path / "runs"), "--set", f"work_dir={tmp_path / 'work'}", *extra]


# ---------------------------------------------------------------------- specs (no Ray)
def test_shipped_specs_load_and_resolve():
    names = {p.stem for p in shipped_specs()}
    assert {"smoke", "layers", "codebook_size", "id_length", "tau", "letter_alpha_beta", "clusters"} <= names
    for path in shipped_specs():
        for budget in [None, *sorted(load_spec(path).budgets)]:
            spec = load_spec(path, budget=budget)
            points = spec.grid_points() if spec.search == "grid" else [spec.representative_point()]
            for point in points:
                config = resolve_trial_config(spec.base(), point)  # every key exists in the config defaults
                assert config["seed"] is not None
    budgeted = {p.stem for p in shipped_specs() if "cpu" in load_spec(p).budgets}
    assert {"layers", "codebook_size", "tau", "letter_alpha_beta", "clusters"} <= budgeted
    assert len(load_spec(REPO / "sweeps" / "letter_alpha_beta.yaml", budget="cpu").grid_points()) == 12 * 3  # 3 seeds


def test_diversity_trials_train_as_the_profiles_default_runs_do():
    """Table 3's trials change only test decoding, so their models are the cpu profile's default runs'
    (and a finished default checkpoint may be resumed for the study instead)."""
    from recommenders.tiger import training_config

    spec = load_spec("diversity")
    for point in spec.grid_points():
        trial = resolve_trial_config(spec.base(), point)
        default = resolve_config("cpu", assignments=["method=tiger", "dataset=beauty", f"tokenizer.name={trial['tokenizer']['name']}",
                                                      f"seed={trial['seed']}"])
        assert trial["eval"]["max_k"] == 50 and trial["decode"]["sample_temperatures"]
        assert training_config(trial) == training_config(default)


def test_paper_grids():
    alpha_beta = load_spec(REPO / "sweeps" / "letter_alpha_beta.yaml")
    points = alpha_beta.grid_points()
    assert len(points) == 16
    assert {p["tokenizer.letter.alpha"] for p in points} == {1e-1, 2e-2, 1e-2, 1e-3}
    assert {p["tokenizer.letter.beta"] for p in points} == {1e-2, 1e-3, 1e-4, 1e-5}
    layers = load_spec(REPO / "sweeps" / "layers.yaml")
    config = resolve_trial_config(layers.base(), layers.grid_points()[0])
    assert config["method"] == "tiger" and config["tokenizer"]["name"] == "rqvae"
    assert config["model"]["encoder_layers"] == config["model"]["decoder_layers"] == 3
    assert {p["layers"] for p in layers.grid_points()} == {3, 4, 5}


def test_grid_points_share_draws_across_seeds():
    spec = load_spec(SMOKE)
    points = spec.grid_points()
    assert len(points) == 4
    by_method = {}
    for p in points:
        by_method.setdefault(p["method"], set()).add(p["data.synthetic.p_next"])
    assert all(len(values) == 1 for values in by_method.values())  # seeds replicate one configuration
    assert spec.grid_points() == points  # seeded: a re-run enumerates the same trials


def test_trial_key_ignores_paths():
    spec = load_spec(SMOKE)
    point = spec.grid_points()[0]
    a = resolve_trial_config(spec.base(), point)
    spec.fixed["results_dir"] = "/elsewhere/runs"
    b = resolve_trial_config(spec.base(), point)
    assert a["results_dir"] != b["results_dir"] and trial_key(a) == trial_key(b)
    assert trial_key(resolve_trial_config(spec.base(), spec.grid_points()[1])) != trial_key(a)


@pytest.mark.parametrize("space, message", [
    ({"a.b": {"uniform": [1]}}, r"needs \[low, high\]"),
    ({"a.b": {"normal": [0, 1]}}, "unknown form"),
    ({"a.b": {"loguniform": [0, 1]}}, "positive lower bound"),
    ({"a.b": 3}, "must be a list"),
])
def test_bad_dimensions_are_clear_errors(space, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec({"space": space})


def test_unknown_spec_entry():
    with pytest.raises(ConfigError, match="unknown spec entries"):
        parse_spec({"methods": ["pop"]})


def test_unknown_key_fails_before_ray(tmp_path, monkeypatch, capsys):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start for a bad spec")

    monkeypatch.setattr(ray, "init", no_ray)
    spec = tmp_path / "bad.yaml"
    spec.write_text("profile: smoke\ndataset: synthetic\nmethod: pop\nspace:\n  model.no_such_key: [1, 2]\n")
    assert main(["sweep", str(spec), "--results-dir", str(tmp_path / "runs")]) == 2
    assert "unknown config key 'model.no_such_key'" in capsys.readouterr().err
    spec.write_text("profile: smoke\ndataset: synthetic\nspace:\n  method: [pop, nope]\n")
    assert main(["sweep", str(spec), "--search", "optuna", "--results-dir", str(tmp_path / "runs")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_dry_run_lists_trials(tmp_path, capsys):
    assert main(sweep_args(tmp_path, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert out.count("would run:") == 4 and "method=random" in out


def test_trainable_forwards_validation_metrics_and_skips_done_trials(tmp_path, monkeypatch):
    """The trainable without Ray: what it reports to Tune (ASHA sees the intermediate metric)."""
    import ray.tune

    import bench.records
    import bench.runner
    from sweeps import trainable

    reported = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **kw: reported.append(dict(metrics)))
    spec = load_spec(SMOKE)
    spec.fixed["results_dir"] = str(tmp_path / "runs")
    trial = {"base": spec.base(), "point": spec.grid_points()[0], "metric": "valid_ndcg@10",
             "sweep": {"name": "smoke", "metric": "valid_ndcg@10", "test_metric_allowed": False}}

    calls = []

    def fake_run(config, report=None, write=True, annotations=None, dataset=None):
        calls.append(write)
        report(1, {"loss": 2.0})  # nothing to forward yet: Tune needs the metric in every result
        report(2, {"valid_ndcg@10": 0.1, "loss": 1.5})
        report(3, {"loss": 1.2})  # carries the last value
        from bench.plugins import METHODS

        assert annotations["sweep"]["metric"] == "valid_ndcg@10"
        record = {"run_id": "r1", "status": "completed", "config": config.to_record(), "config_hash": "h",
                  "components": METHODS.get(config["method"]).components(config),
                  "metrics": {"valid": {"ndcg@10": 0.2}, "test": {"ndcg@10": 0.15}}}
        bench.records.write_record(record, config["results_dir"])
        return record

    monkeypatch.setattr(bench.runner, "run", fake_run)
    trainable.run_trial(trial)
    assert [r.get("step") for r in reported] == [2, 3, None]
    assert reported[1]["valid_ndcg@10"] == 0.1 and reported[1]["loss"] == 1.2
    assert reported[2]["valid_ndcg@10"] == 0.2 and reported[2]["test_ndcg@10"] == 0.15
    assert reported[2]["final"] and not reported[2]["skipped"] and reported[2]["run_id"] == "r1"
    assert json.loads(reported[2]["record_json"])["run_id"] == "r1"  # the record travels home in the report
    assert calls == [False]  # the trial itself writes nothing to the store

    reported.clear()
    monkeypatch.setattr(bench.runner, "run", lambda *a, **k: pytest.fail("a finished trial must not run again"))
    trainable.run_trial(trial)  # e.g. Optuna proposing a config that is already in the store
    assert len(reported) == 1 and reported[0]["skipped"] and reported[0]["valid_ndcg@10"] == 0.2

    # a record published (moved to the curated store next to the scratch store) still counts as done
    reported.clear()
    scratch = tmp_path / "runs"
    scratch.rename(scratch.parent / "published")
    trainable.run_trial(trial)
    assert len(reported) == 1 and reported[0]["skipped"] and reported[0]["run_id"] == "r1"


# ---------------------------------------------------------------------- a Ray head on 127.0.0.1
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the head's processes")
@pytest.mark.slow
def test_sweep_joins_a_ray_head(tmp_path):
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="rayhead", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    ray_cli = Path(sys.executable).with_name("ray")
    ray_cli = str(ray_cli) if ray_cli.is_file() else shutil.which("ray")
    assert ray_cli, "the `ray` command of this environment was not found"
    # --block keeps `ray start` in the foreground; terminating it stops exactly this head's processes
    # (`ray stop` would stop every Ray instance on the machine)
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp_dir],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    log: list[str] = []
    started = threading.Event()

    def read():
        for line in head.stdout:
            log.append(line)
            if "Ray runtime started" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    processes: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not started.is_set() and head.poll() is None and time.monotonic() < deadline:
            started.wait(0.5)
        assert started.is_set(), "the Ray head did not start:\n" + "".join(log[-30:])
        processes = _descendants(head.pid)
        # the CLI in its own process, as a user runs it (one process, one Ray connection)
        sweep = subprocess.run(
            [sys.executable, "-m", "bench.cli", *sweep_args(tmp_path, "--address", f"127.0.0.1:{port}")],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        assert sweep.returncode == 0, sweep.stdout + sweep.stderr
        assert f"cluster at 127.0.0.1:{port}" in sweep.stdout
        done = records(tmp_path / "runs")
        assert len(done) == 4 and all(r["status"] == "completed" for r in done)
    finally:
        processes = sorted(set(processes) | set(_descendants(head.pid)))
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in processes:  # whatever of this head outlived `ray start`: by pid, never by name
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not any(_alive(p) for p in processes)


# ---------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One local Ray session for the module (the launcher reuses a connected session)."""
    import logging

    import ray

    cache = str(tmp_path_factory.mktemp("ray-cache"))
    previous = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = cache  # trial workers inherit the environment Ray starts with
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
    yield
    ray.shutdown()
    if previous is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = previous


@pytest.mark.slow
def test_grid_sweep_writes_records_and_rerun_skips(ray_local, tmp_path, capsys):
    assert main(sweep_args(tmp_path)) == 0
    out = capsys.readouterr().out
    done = records(tmp_path / "runs")
    assert len(done) == 4 and all(r["status"] == "completed" for r in done)
    assert {(r["method"], r["seed"]) for r in done} == {("pop", 0), ("pop", 1), ("random", 0), ("random", 1)}
    assert all(r["config"]["data"]["synthetic"]["n_users"] == 200 for r in done)
    assert "4 completed" in out and "| status" in out
    # Ray Tune's TensorBoard callback: one event file per trial under the sweep's Ray folder
    assert len(list((tmp_path / "work" / "ray").rglob("events.out.tfevents*"))) == 4

    # the same sweep again: every trial is in the store, nothing runs
    assert main(sweep_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "4 already in the store, 0 to run" in out and "4 skipped" in out
    assert len(records(tmp_path / "runs")) == 4

    # a fresh clone: the scratch store is gone, the published store next to it holds the records
    (tmp_path / "runs").rename(tmp_path / "published")
    assert main(sweep_args(tmp_path, "--dry-run")) == 0
    assert "4 already in the store, 0 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_optuna_sweep(ray_local, tmp_path, capsys):
    assert main(sweep_args(tmp_path, "--search", "optuna", "--num-samples", "4", "--scheduler", "asha")) == 0
    out = capsys.readouterr().out
    done = records(tmp_path / "runs")
    assert len(done) == 4 and all(r["status"] == "completed" for r in done)
    assert len({r["config"]["data"]["synthetic"]["p_next"] for r in done}) == 4  # TPE proposed 4 points
    assert all(0.6 <= r["config"]["data"]["synthetic"]["p_next"] <= 0.9 for r in done)
    assert "optuna" in out and "4 completed" in out


@pytest.mark.slow
def test_failing_trial_is_recorded_and_the_sweep_goes_on(ray_local, tmp_path, capsys):
    spec = tmp_path / "failing.yaml"
    spec.write_text(
        "profile: smoke\ndataset: synthetic\nmethod: pop\n"
        "set:\n  data.synthetic.n_users: 150\n"
        "space:\n  data.synthetic.n_items: [60, 5, 80]\n"  # 5 items < 8 categories: the run raises
    )
    rc = main(["sweep", str(spec), "--results-dir", str(tmp_path / "runs"), "--set", f"work_dir={tmp_path / 'w'}",
               "--max-failures", "1"])
    out = capsys.readouterr().out
    assert rc == 1  # some trial failed; the others ran
    done = records(tmp_path / "runs")
    completed = [r for r in done if r["status"] == "completed"]
    failed = [r for r in done if r["status"] == "failed"]
    assert sorted(r["config"]["data"]["synthetic"]["n_items"] for r in completed) == [60, 80]
    assert len(failed) == 1  # one record for the trial: its last try, written by the driver after the retry
    assert "retrying after a failure" in out
    assert all("n_items must be at least n_categories" in r["error"] for r in failed)
    assert "2 completed" in out and "1 failed" in out and "n_items must be at least n_categories" in out


@pytest.mark.slow
def test_reproduce_beauty_spec_runs_every_step_with_the_smoke_profile(ray_local, tmp_path, capsys):
    """The one-command reproduction of the Beauty table, on CPU with the smoke profile and synthetic
    data: 5 baselines and TIGER with the 4 tokenizers (LETTER trains its CF embeddings on the way)."""
    rc = main(["sweep", str(REPO / "sweeps" / "reproduce_beauty.yaml"), "--profile", "smoke",
               "--set", "dataset=synthetic", "train.progress=false", "embed.progress=false", "tokenizer.progress=false",
               "--results-dir", str(tmp_path / "runs"), "--set", f"work_dir={tmp_path / 'work'}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    done = records(tmp_path / "runs")
    assert len(done) == 9 and all(r["status"] == "completed" for r in done)
    labels = sorted(r["label"] for r in done)
    assert labels == sorted(["Pop", "SASRec (CE)", "SASRec (BCE)", "BERT4Rec (CE)", "GRU4Rec (CE)", "TIGER[random_id]",
                             "TIGER[lsh]", "TIGER[rqvae]", "TIGER[letter]"])
    letter = next(r for r in done if r["label"] == "TIGER[letter]")
    assert letter["method_info"]["tokenizer"]["cf_embeddings"] is True
    assert main(["table", "--results-dir", str(tmp_path / "runs"), "--profile", "smoke"]) == 0
    assert "TIGER[letter]" in capsys.readouterr().out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to tell a share from the machine")
def test_a_trial_with_auto_threads_uses_the_cpus_ray_reserved_not_the_machines(ray_local, tmp_path):
    """Ray reserves CPUs but does not pin a trial: ``train.num_threads: auto`` must still mean its share."""
    spec = tmp_path / "threads.yaml"
    spec.write_text("profile: smoke\ndataset: synthetic\ntokenizer: random_id\n"
                    "set: {data.synthetic.n_users: 60, data.synthetic.n_items: 30, train.num_threads: auto}\n"
                    "space:\n  train.lr: [0.001]\n")
    args = ["sweep", str(spec), "--results-dir", str(tmp_path / "runs"), "--set", f"work_dir={tmp_path / 'w'}",
            "--cpus-per-trial", "1"]
    assert main(args) == 0
    (record,) = records(tmp_path / "runs")
    assert record["config"]["train"]["num_threads"] == "auto"
    assert record["budget"]["threads"] == 1


def test_auto_threads_are_capped_by_the_share_a_scheduler_gave(monkeypatch):
    from bench.device import CORE_SHARE_ENV, available_cores, resolve_threads

    monkeypatch.delenv(CORE_SHARE_ENV, raising=False)
    machine = available_cores()
    monkeypatch.setenv(CORE_SHARE_ENV, "1")
    assert resolve_threads("auto") == 1
    monkeypatch.setenv(CORE_SHARE_ENV, str(machine + 4))
    assert resolve_threads("auto") == machine


@pytest.mark.slow
def test_optuna_starts_from_initial_points_and_later_from_the_store(ray_local, tmp_path, capsys):
    spec = tmp_path / "tpe.yaml"
    spec.write_text(
        "profile: smoke\ndataset: synthetic\nsearch: optuna\n"
        "set: {data.synthetic.n_users: 150, data.synthetic.n_items: 60}\n"
        "space:\n  run:\n    cases:\n      popular: {method: pop}\n      uniform: {method: random}\n"
        "  data.synthetic.p_next: {uniform: [0.6, 0.9]}\n"
        "initial_points:\n  - {run: uniform, data.synthetic.p_next: 0.75}\n"
    )
    args = ["sweep", str(spec), "--results-dir", str(tmp_path / "runs"), "--set", f"work_dir={tmp_path / 'w'}"]
    assert main(args + ["--num-samples", "1"]) == 0
    first = records(tmp_path / "runs")
    assert len(first) == 1 and first[0]["method"] == "random"
    assert first[0]["config"]["data"]["synthetic"]["p_next"] == 0.75  # the initial point ran first
    assert first[0]["sweep"]["name"] == "tpe" and first[0]["sweep"]["test_metric_allowed"] is False
    capsys.readouterr()
    # an initial point added to the spec later runs before TPE's own proposals
    spec.write_text(spec.read_text() + "  - {run: popular, data.synthetic.p_next: 0.65}\n")
    assert main(args + ["--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 trial(s) of this spec already in the store are given to TPE; " \
           "1 initial point(s) not yet run go first" in out
    second = records(tmp_path / "runs")
    assert len(second) == 3
    assert any(r["method"] == "pop" and r["config"]["data"]["synthetic"]["p_next"] == 0.65 for r in second)


def test_records_come_home_once_and_failed_ones_only_when_the_trial_fails_for_good(tmp_path):
    """The driver writes what trials report (they write nothing to the store themselves)."""
    from types import SimpleNamespace

    from bench.plugins import METHODS
    from sweeps.ray_runner import _records_home

    spec = load_spec(SMOKE)
    config = resolve_trial_config(spec.base(), spec.grid_points()[0])
    record = {"run_id": "r1", "status": "completed", "config": config.to_record(),
              "components": METHODS.get(config["method"]).components(config), "metrics": {"valid": {}, "test": {}}}
    home = _records_home(str(tmp_path), print, stored_keys=set())
    trial, retried = SimpleNamespace(trial_id="t1"), SimpleNamespace(trial_id="t2")
    home.on_trial_result(0, [], trial, {"record_json": json.dumps(record)})
    home.on_trial_result(0, [], trial, {"record_json": json.dumps(dict(record, run_id="r1-again"))})  # a retry
    assert [r["run_id"] for r in records(tmp_path)] == ["r1"]
    failed = dict(record, run_id="f1", status="failed", error="boom")
    home.on_trial_result(0, [], retried, {"failed_record_json": json.dumps(failed)})
    assert len(records(tmp_path)) == 1  # not yet: the trial may be retried
    home.on_trial_error(0, [], retried)
    assert sorted(r["run_id"] for r in records(tmp_path)) == ["f1", "r1"]


# ---------------------------------------------------------------------- a cluster of separate nodes
@pytest.fixture
def two_node_cluster(tmp_path):
    """A Ray head that runs no trial (0 CPUs) and a separate worker node with a `trial_node` resource,
    both on this machine (``ray.cluster_utils.Cluster``); everything is shut down afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2, resources={"trial_node": 2})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def _cluster_spec(tmp_path, method: str, extra: str = "") -> Path:
    data = tmp_path / "driver-data"
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        f"profile: smoke\ndataset: synthetic\nmethod: {method}\n"
        f"data_dir: {data}\n"  # read by the driver only: trials get the dataset through Ray
        "set: {data.synthetic.n_users: 150, data.synthetic.n_items: 60, train.progress: false,"
        " embed.progress: false, tokenizer.progress: false}\n"
        "seeds: [1, 2]\nresources: {cpu: 1, trial_node: 1}\nmax_failures: 3\n" + extra
    )
    data.mkdir()
    return spec


@pytest.mark.slow
def test_trials_on_a_separate_worker_node_send_their_records_home(two_node_cluster, tmp_path, monkeypatch, capsys):
    import sweeps.ray_runner as ray_runner

    spec = _cluster_spec(tmp_path, "pop")
    shipped = ray_runner.ship_datasets

    def ship_then_hide(*args, **kwargs):  # the trials cannot read the driver's data folder...
        datasets = shipped(*args, **kwargs)
        shutil.rmtree(tmp_path / "driver-data")
        return datasets

    monkeypatch.setattr(ray_runner, "ship_datasets", ship_then_hide)
    store = tmp_path / "driver-store"
    assert main(["sweep", str(spec), "--results-dir", str(store), "--set", f"work_dir={tmp_path / 'w'}"]) == 0
    done = records(store)
    assert len(done) == 2 and all(r["status"] == "completed" for r in done)  # ...and every record came home
    assert "using the Ray session" in capsys.readouterr().out


@pytest.mark.slow
def test_a_worker_node_lost_mid_trial_loses_nothing(two_node_cluster, tmp_path, capsys):
    cluster, worker = two_node_cluster
    spec = _cluster_spec(tmp_path, "tiger", "tokenizer: random_id\n")
    store, work = tmp_path / "driver-store", tmp_path / "w"
    result = {}
    sweep = threading.Thread(target=lambda: result.setdefault("rc", main(
        ["sweep", str(spec), "--results-dir", str(store), "--set", f"work_dir={work}", "train.eval_every=50"])))
    sweep.start()
    deadline = time.monotonic() + 240
    while not list(work.glob("*/checkpoint.pt")) and time.monotonic() < deadline:  # a trial is training
        time.sleep(0.2)
    assert list(work.glob("*/checkpoint.pt")), "no trial started training"
    cluster.remove_node(worker, allow_graceful=False)  # the node dies with its trials
    cluster.add_node(num_cpus=2, resources={"trial_node": 2})  # a fresh one joins
    sweep.join(timeout=600)
    assert not sweep.is_alive() and result.get("rc") == 0
    done = records(store)
    assert sorted(r["seed"] for r in done) == [1, 2]  # exactly one completed record per trial
    assert all(r["status"] == "completed" for r in done)
    out = capsys.readouterr().out
    assert "retrying after a failure" in out and "2 completed" in out, out  # the lost trial ran again


@pytest.mark.slow
def test_a_killed_driver_rerun_runs_only_what_is_missing(tmp_path):
    """The sweep process killed (SIGKILL, with the local Ray it started) after its first record:
    re-running it completes the sweep with one record per trial."""
    spec = tmp_path / "killed.yaml"
    spec.write_text(
        "profile: smoke\ndataset: synthetic\nmethod: tiger\ntokenizer: random_id\n"
        "set: {data.synthetic.n_users: 150, data.synthetic.n_items: 60, train.progress: false,"
        " embed.progress: false, tokenizer.progress: false, train.max_steps: 300}\nseeds: [1, 2, 3]\n"
    )
    args = [sys.executable, "-m", "bench.cli", "sweep", str(spec), "--results-dir", str(tmp_path / "runs"),
            "--set", f"work_dir={tmp_path / 'w'}", "--max-concurrent", "1", "--num-cpus", "1"]
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "runs").glob("*.json")) and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
        first = len(records(tmp_path / "runs"))
        assert first >= 1, "no record before the deadline"
    finally:
        processes = _descendants(driver.pid) + [driver.pid]
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
        for pid in processes:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{first} already in the store" in rerun.stdout
    done = records(tmp_path / "runs")
    assert sorted(r["seed"] for r in done) == [1, 2, 3] and all(r["status"] == "completed" for r in done)


def test_dry_run_estimate_prefers_runs_timed_on_this_cpu():
    """A trial's estimate scales the training time of earlier runs to its step budget, from this CPU
    generation's runs where there are any: the same model name trained 2.2x slower on another generation."""
    from sweeps.launcher import estimate_seconds

    config = resolve_config("cpu", overrides={"method": "tiger", "dataset": "beauty", "tokenizer": {"name": "rqvae"},
                                              "train": {"max_steps": 4000}})

    def record(generation, train_seconds, steps, other_seconds=100.0):
        return {"config": config.to_record(), "hardware": {"cpu_generation": generation},
                "timings_s": {"fit": train_seconds + other_seconds},
                "budget": {"optimizer_steps": steps, "train_seconds": train_seconds, "stop_reason": "time limit"}}

    fast, slow = record("family 25, model 17", 1000.0, 2000), record("family 25, model 1", 2200.0, 2000)
    seconds, basis = estimate_seconds(config, [fast, slow], "family 25, model 1")
    assert seconds == pytest.approx(100.0 + 4400.0) and "this CPU (1 run" in basis
    seconds, basis = estimate_seconds(config, [fast, slow], "family 6, model 85")
    assert seconds == pytest.approx((2100.0 + 4500.0) / 2) and "other or unrecorded CPUs (2 run" in basis
    other_tokenizer = with_values(config, {"tokenizer": {"name": "letter"}})
    assert estimate_seconds(other_tokenizer, [fast, slow], "family 25, model 1") == (None, "")


def test_dry_run_wall_time_is_never_below_the_longest_trial():
    from sweeps.launcher import SweepOptions, format_estimate

    spec = load_spec("smoke")
    line = format_estimate([3600.0, 600.0], spec, SweepOptions(num_cpus=2, max_concurrent=2))
    assert "2 trials; estimated wall time 1.0 h with 2 at a time" in line  # not (3600 + 600) / 2 = 0.6 h
    line = format_estimate([3600.0, 3600.0, 3600.0, 3600.0], spec, SweepOptions(num_cpus=2, max_concurrent=2))
    assert "estimated wall time 2.0 h with 2 at a time" in line


def test_an_interrupted_trial_resumes_from_its_checkpoint_and_ends_as_if_never_stopped(tmp_path, monkeypatch, capsys):
    """A trial interrupted at its second validation (a session that ended, a killed sweep) leaves a
    checkpoint and no record; the sweep's next run of that trial goes on from the checkpoint (the
    dry run says so), and its record is the record of an uninterrupted run, counted as the trial."""
    import ray.tune

    from bench.atomic import run_lock
    from bench.runner import run
    from sweeps import trainable
    from sweeps.launcher import SweepOptions, launch

    spec_file = tmp_path / "resume.yaml"
    spec_file.write_text(
        "profile: smoke\ndataset: synthetic\nmethod: tiger\ntokenizer: random_id\nseeds: [3]\n"
        "set: {data.synthetic.n_users: 150, data.synthetic.n_items: 60, train.progress: false, embed.progress: false,"
        " tokenizer.progress: false, train.max_steps: 60, train.eval_every: 20, model.dropout: 0.1}\n"
    )
    spec = load_spec(spec_file)
    spec.fixed.update(results_dir=str(tmp_path / "runs"), work_dir=str(tmp_path / "work"))
    trial = {"base": spec.base(), "point": spec.grid_points()[0], "metric": "valid_ndcg@10"}
    config = resolve_trial_config(trial["base"], trial["point"])

    def stop_at_step_40(step, metrics):
        if step == 40:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(config, report=stop_at_step_40, write=False)
    interrupted = next((tmp_path / "work").iterdir())
    assert (interrupted / "checkpoint.pt").is_file() and not (tmp_path / "runs").exists()

    options = SweepOptions(dry_run=True, results_dir=str(tmp_path / "runs"), assignments=[f"work_dir={tmp_path / 'work'}"])
    # while a process still runs in that folder (another sweep sharing the trial), it is neither resumed nor run again
    with run_lock(interrupted):
        assert trainable.find_interrupted(str(tmp_path / "work"), trial_key(config)) is None
        launch(load_spec(spec_file), options)
        out = capsys.readouterr().out
        assert f"running in another process: seed=3 ({interrupted})" in out and "0 to run" in out, out
    launch(load_spec(spec_file), options)
    assert f"resumes from the checkpoint (step 40) of its interrupted run {interrupted}" in capsys.readouterr().out

    reported = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **kw: reported.append(dict(metrics)))
    trainable.run_trial(trial)
    record = json.loads(reported[-1]["record_json"])
    training = record["method_info"]["training"]
    assert training["resumed_from"] == str(interrupted / "checkpoint.pt")
    assert [c["step"] for c in training["curve"]] == [20, 40, 60]
    assert trial_key(record["config"], record["components"]) == trial_key(config)  # the sweep counts it as done

    never_stopped = run(with_values(config, {"work_dir": str(tmp_path / "work2")}), write=False)
    assert record["metrics"] == never_stopped["metrics"]
    assert [c["loss"] for c in training["curve"]] == [c["loss"] for c in never_stopped["method_info"]["training"]["curve"]]


def test_dry_run_estimate_of_a_resumed_trial_counts_the_steps_it_has_left():
    from sweeps.launcher import estimate_seconds

    config = resolve_config("cpu", overrides={"method": "tiger", "dataset": "beauty", "tokenizer": {"name": "rqvae"},
                                              "train": {"max_steps": 4000}})
    timed = {"config": config.to_record(), "hardware": {"cpu_generation": "g"}, "timings_s": {"fit": 4100.0, "rank": 300.0},
             "budget": {"optimizer_steps": 4000, "train_seconds": 4000.0}}
    assert estimate_seconds(config, [timed], "g")[0] == pytest.approx(4400.0)
    assert estimate_seconds(config, [timed], "g", done_steps=3000)[0] == pytest.approx(400.0 + 1000.0)


def test_a_decoding_study_is_timed_by_runs_of_the_same_study_with_their_whole_training():
    from sweeps.launcher import estimate_seconds

    base = resolve_config("cpu", overrides={"method": "tiger", "dataset": "beauty", "tokenizer": {"name": "letter"},
                                            "train": {"max_steps": 4000}})
    plain = {"config": base.to_record(), "hardware": {"cpu_generation": "g"}, "timings_s": {"fit": 3000.0, "rank": 300.0},
             "budget": {"optimizer_steps": 4000, "train_seconds": 2900.0}}
    # decoded again from a finished checkpoint: 2 s of fit here, the 2900 s of training in the first run
    sampled = with_values(base, {"decode": {"sample_temperatures": [1.0, 2.0]}})
    study = {"config": sampled.to_record(), "hardware": {"cpu_generation": "g"}, "timings_s": {"fit": 2.0, "rank": 2500.0},
             "budget": {"optimizer_steps": 4000, "train_seconds": 2900.0}}
    assert estimate_seconds(sampled, [plain, study], "g")[0] == pytest.approx(2.0 + 2500.0 + 2898.0)
    assert estimate_seconds(base, [plain, study], "g")[0] == pytest.approx(3300.0)
    # no run of the study yet: the plain runs, as before
    assert estimate_seconds(sampled, [plain], "g")[0] == pytest.approx(3300.0)
