"""The `bench sweep` contract (issue 29): a user error is one `bench: error:` line and exit status 2,
never a traceback or a hang.

- joining a cluster has a deadline (``--connect-timeout``): an address with nothing listening, or a
  port that answers but is no Ray head, fails with the address and what to check;
- a spec's unknown config key names the spec file;
- the gpu profile's TIGER budget is a step count (the clock only a safety cap);
- a collapsed learned codebook (RQ-VAE, LETTER) is an error unless ``tokenizer.allow_collapse``;
- ``--gpus-per-trial`` defaults to ``auto`` (a GPU per trial where the cluster has one).

No Ray cluster is needed: the unreachable cases run the CLI in a subprocess against local ports.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.config import ConfigError, resolve_config
from bench.errors import UserError
from bench.plugins import METHODS
from sweeps.ray_runner import (
    ClusterUnreachableError,
    SweepError,
    gpus_per_trial,
    join_cluster,
    split_address,
)
from sweeps.spec import load_spec, parse_spec, resolve_trial_config, trial_key

REPO = Path(__file__).resolve().parent.parent
BEAUTY_EXAMPLES = 198_502 - 3 * 22_363  # training examples per epoch: interactions less 3 per user


def closed_port() -> int:
    """A local port with nothing listening (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(tmp_path, *args, timeout=60) -> subprocess.CompletedProcess:
    """`bench` in its own process, as a user runs it; a hang fails the test at ``timeout``."""
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("bench: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


def no_ray(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray must not start for this error")

    monkeypatch.setattr(ray, "init", refuse)


# ---------------------------------------------------------------------- 1. joining a cluster: a deadline
def test_an_address_with_nothing_listening_fails_with_one_line_naming_it(tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    result = run_cli(tmp_path, "sweep", "smoke", "--address", address, "--connect-timeout", "5",
                     "--results-dir", str(tmp_path / "runs"))
    error = assert_one_error_line(result)
    assert address in error and "nothing listens" in error
    assert "ray start --head" in error and "RAY_AUTH_MODE" in error and "auth_token" in error
    assert not (tmp_path / "runs").exists()


def test_a_port_that_answers_but_is_no_ray_head_fails_at_the_deadline(tmp_path):
    """Ray itself would retry for many minutes here: the watchdog gives up and the process exits."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))  # every address of this machine: Ray dials the node IP for 127.0.0.1
    server.listen(64)
    port = server.getsockname()[1]
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # accept and say nothing
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        result = run_cli(tmp_path, "sweep", "smoke", "--address", f"127.0.0.1:{port}", "--connect-timeout", "3",
                         "--results-dir", str(tmp_path / "runs"))
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()
    error = assert_one_error_line(result)
    assert f"127.0.0.1:{port}" in error and "did not finish connecting within 3 s" in error
    assert "--connect-timeout" in error and "ray start --head" in error


def test_join_cluster_fails_at_once_when_the_port_refuses_and_never_calls_init():
    calls = []
    with pytest.raises(ClusterUnreachableError, match="nothing listens") as caught:
        join_cluster("10.1.2.3:6379", 30, lambda: calls.append(1),
                     probe=lambda host, port, timeout: f"connection refused: nothing listens on {host}:{port}")
    assert not calls and not caught.value.init_stuck
    assert isinstance(caught.value, UserError) and "10.1.2.3:6379" in str(caught.value)


def _join_abandoned_connects():
    """Let the abandoned connect threads finish now: each ends with ``ray.shutdown()``, which would
    stop the Ray session of whatever test this worker process runs next (it did: a sweep test's
    trial actors were killed mid-sweep, "Can't find actor")."""
    for thread in threading.enumerate():
        if thread.name == "bench-ray-connect":
            thread.join(10)
            assert not thread.is_alive()


def test_join_cluster_gives_up_on_an_init_that_never_returns():
    release = threading.Event()
    start = time.monotonic()
    with pytest.raises(ClusterUnreachableError, match="did not finish connecting within 0.5 s") as caught:
        join_cluster("10.1.2.3:6379", 0.5, release.wait, probe=lambda host, port, timeout: None)
    assert caught.value.init_stuck
    assert time.monotonic() - start < 30  # generous: the deadline is 0.5 s
    release.set()  # the abandoned init "connects" late: it disconnects again (ray.shutdown, a no-op here)
    _join_abandoned_connects()


def test_join_cluster_turns_rays_errors_into_one_user_error():
    def fails():
        raise ConnectionError("Could not find any running Ray instance.\nmore details")

    with pytest.raises(SweepError, match="Could not find any running Ray instance. Check that a Ray head"):
        join_cluster("auto", 5, fails)  # "auto": no TCP check, Ray finds the address itself
    join_cluster("127.0.0.1:6379", 5, lambda: None, probe=lambda host, port, timeout: None)  # connected


def test_a_probe_that_hangs_is_cut_at_the_deadline():
    release = threading.Event()

    def hangs(host, port, timeout):
        release.wait(60)

    start = time.monotonic()
    with pytest.raises(ClusterUnreachableError, match="no answer within 0.3 s") as caught:
        join_cluster("10.1.2.3:6379", 0.3, lambda: None, probe=hangs)
    assert not caught.value.init_stuck and time.monotonic() - start < 30
    release.set()
    _join_abandoned_connects()


@pytest.mark.parametrize("address, expected", [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)),
    ("ray://head.example:10001", ("head.example", 10001)),
    ("[::1]:6379", ("::1", 6379)),
    ("auto", None),
])
def test_split_address(address, expected):
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["head", "head:", "head:port", "head:0", ":6379", "head:70000"])
def test_a_malformed_address_is_a_user_error(address):
    with pytest.raises(SweepError, match="expected HOST:PORT"):
        split_address(address)


def test_a_bad_connect_timeout_is_a_usage_error(capsys):
    for value in ("0", "-1", "soon"):
        with pytest.raises(SystemExit) as caught:
            main(["sweep", "smoke", "--address", "127.0.0.1:1", "--connect-timeout", value])
        assert caught.value.code == 2
    assert "positive number of seconds" in capsys.readouterr().err


# ---------------------------------------------------------------------- 2. a spec's unknown key names the spec
@pytest.mark.parametrize("body, key, where", [
    ("set:\n  train.max_stepz: 5\n", "'train.max_stepz'", ": set:"),
    ("space:\n  model.dropoutt: [0.1, 0.2]\n", "'model.dropoutt'", ": space:"),
    ("space:\n  layers:\n    keys: [model.encoder_layers, model.decoder_layerz]\n    values: [2, 3]\n",
     "'model.decoder_layerz'", ": space 'layers':"),
    ("space:\n  run:\n    cases: {a: {method: pop}, b: {baseline.hidden_sise: 8}}\n",
     "'baseline.hidden_sise'", ": space 'run', case 'b':"),
])
def test_a_specs_unknown_key_names_the_spec_file_and_the_key(tmp_path, monkeypatch, capsys, body, key, where):
    no_ray(monkeypatch)
    spec = tmp_path / "typo.yaml"
    spec.write_text("profile: smoke\ndataset: synthetic\nmethod: pop\n" + body)
    assert main(["sweep", str(spec), "--dry-run", "--results-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bench: error: {spec}{where} unknown config key {key}"), err
    assert "command line" not in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="typo.yaml"):
        load_spec(spec)


def test_an_unknown_key_of_set_on_the_command_line_names_the_flag(tmp_path, monkeypatch, capsys):
    no_ray(monkeypatch)
    assert main(["sweep", "smoke", "--dry-run", "--set", "train.max_stepz=5",
                 "--results-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "--set train.max_stepz=5: unknown config key 'train.max_stepz'" in err and "max_steps" in err


# ---------------------------------------------------------------------- 3. the gpu profile: a step budget
def test_the_gpu_profile_budgets_tiger_in_steps_not_minutes():
    config = resolve_config("gpu", overrides={"method": "tiger", "dataset": "beauty"})
    train = config["train"]
    assert isinstance(train["max_steps"], int) and train["max_epochs"] is None
    epochs = train["max_steps"] * train["batch_size"] / BEAUTY_EXAMPLES
    assert 17 < epochs < 60  # beyond the ~17 epochs reproductions need, not hundreds
    assert train["batch_size"] >= 512 and train["amp"] == "bf16"  # sized for a GPU
    assert train["patience"] and train["eval_every"] and train["eval_every"] < train["max_steps"]  # early stopping
    # the clock is only a safety cap: far above what the steps take on an H200 (~10 steps/s or more)
    assert train["time_limit_min"] is None or train["time_limit_min"] * 60 * 5 >= train["max_steps"]
    text = (REPO / "bench" / "configs" / "profiles" / "gpu" / "model.yaml").read_text()
    assert "epochs" in text and "max_steps" in text and "safety cap" in text


def test_reproduce_beauty_trains_tiger_for_the_gpu_profiles_steps():
    spec = load_spec("reproduce_beauty")
    assert spec.profile == "gpu" and spec.resources["gpu"] == "auto"
    tiger = [resolve_trial_config(spec.base(), p) for p in spec.grid_points()]
    tiger = [c for c in tiger if c["method"] == "tiger"]
    assert len(tiger) == 4
    gpu = resolve_config("gpu")["train"]
    for config in tiger:
        assert config["train"]["max_steps"] == gpu["max_steps"]
        assert config["train"]["time_limit_min"] == gpu["time_limit_min"]


# ---------------------------------------------------------------------- 4. codebook collapse is an error
def collapse_config(tmp_path, name="rqvae", *sets):
    return resolve_config("smoke", assignments=[
        f"tokenizer.name={name}", f"tokenizer.cache_dir={tmp_path / 'tokenizers'}",
        "tokenizer.allow_collapse=false",  # the default (a profile for toy data may allow it)
        "tokenizer.collapse_threshold=1.0",  # every reachable code at every level: a small fit cannot
        f"tokenizer.{name}.codebook_size=64", f"tokenizer.{name}.code_dim=8", f"tokenizer.{name}.hidden=[16]",
        f"tokenizer.{name}.epochs=2", *sets,
    ])


@pytest.fixture
def items():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(4, 16)).repeat(10, axis=0) + rng.normal(scale=1e-3, size=(40, 16))).astype(np.float32)


def test_a_collapsed_rqvae_codebook_is_an_error_unless_allowed(tmp_path, items, one_thread, capsys):
    from tokenizers_zoo import CodebookCollapseError, fit_tokenizer

    assert resolve_config()["tokenizer"]["allow_collapse"] is False  # the default
    config = collapse_config(tmp_path)
    with pytest.raises(CodebookCollapseError) as caught:
        fit_tokenizer(config, items)
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and "\n" not in message
    assert "rqvae codebook collapsed at level 1" in message and "utilisation" in message
    assert "tokenizer.collapse_threshold 1" in message and "tokenizer.allow_collapse=true" in message
    assert str(tmp_path / "tokenizers") in message  # cached: allowing it needs no new fit
    allowed = fit_tokenizer(collapse_config(tmp_path, "rqvae", "tokenizer.allow_collapse=true"), items)
    assert allowed.source is not None  # the fit that failed the check, from the cache
    assert allowed.stats()["collapse_warning"] and "codebook collapse at level 1" in capsys.readouterr().err
    with pytest.raises(CodebookCollapseError):  # uncached too
        fit_tokenizer(collapse_config(tmp_path, "rqvae", "tokenizer.cache=false"), items)


def test_a_collapsed_letter_codebook_is_an_error_too(tmp_path, items, one_thread):
    from tokenizers_zoo import CodebookCollapseError, fit_tokenizer

    config = collapse_config(tmp_path, "letter", "tokenizer.letter.alpha=0", "tokenizer.letter.n_clusters=2",
                             "tokenizer.letter.levels=2")
    with pytest.raises(CodebookCollapseError, match="letter codebook collapsed"):
        fit_tokenizer(config, items)


def test_lsh_and_random_ids_only_warn(tmp_path, items, capsys):
    from tokenizers_zoo import fit_tokenizer

    config = resolve_config("smoke", assignments=[
        "tokenizer.name=lsh", "tokenizer.cache=false", "tokenizer.collapse_threshold=1.0", "tokenizer.lsh.center=false"])
    tokenizer = fit_tokenizer(config, items)  # codes are a function of the embeddings: not a failed fit
    assert tokenizer.stats()["collapse_warning"] and "WARNING [lsh]" in capsys.readouterr().err


def test_allow_collapse_is_a_checked_config_key_and_keeps_stored_trials_done():
    with pytest.raises(ConfigError, match="allow_collapse"):
        resolve_config("smoke", assignments=["tokenizer.allow_collapse=maybe"])
    def variants(resolved):
        config, components = resolved.to_record(), METHODS.get(resolved.method).components(resolved)
        before = {**config, "tokenizer": {k: v for k, v in config["tokenizer"].items() if k != "allow_collapse"}}
        off = {**config, "tokenizer": {**config["tokenizer"], "allow_collapse": False}}
        on = {**config, "tokenizer": {**config["tokenizer"], "allow_collapse": True}}
        return [trial_key(c, components) for c in (before, off, on)], trial_key(config, components)

    resolved = resolve_config("smoke", overrides={"method": "tiger", "tokenizer": {"name": "rqvae"}})
    (before, off, on), plain = variants(resolved)
    assert before == off  # records made before the key existed still count
    assert on != off
    assert trial_key(resolved) == plain  # a resolved config's key is its record's
    spec = load_spec("smoke")  # its trials are pop and random: they read no tokenizer section
    (before, off, on), _ = variants(resolve_trial_config(spec.base(), spec.grid_points()[0]))
    assert before == off == on


# ---------------------------------------------------------------------- 5. --gpus-per-trial auto
@pytest.mark.parametrize("requested, cluster_gpus, devices, expected", [
    ("auto", 1, ["auto"], 1.0),
    ("auto", 8, ["auto", "cuda"], 1.0),
    (None, 1, ["auto"], 1.0),  # not given anywhere: auto
    ("auto", 0, ["auto"], 0.0),  # no GPU in the cluster
    ("auto", 0.5, ["auto"], 0.0),  # not a whole GPU
    ("auto", 1, ["cpu"], 0.0),  # every trial forced to the CPU
    ("auto", 1, ["cpu", "auto"], 1.0),  # some trial may use it
    (0, 1, ["auto"], 0.0),  # an explicit number wins
    (2, 4, ["cpu"], 2.0),
    (0.5, 1, ["auto"], 0.5),
    (1, 0, ["auto"], 0.0),  # ... but never a GPU the cluster has not: the trial would wait for ever
])
def test_gpus_per_trial(requested, cluster_gpus, devices, expected):
    assert gpus_per_trial(requested, cluster_gpus, devices) == expected


def test_gpus_per_trial_defaults_to_auto_and_takes_numbers(tmp_path, monkeypatch):
    from bench.cli import build_parser
    from sweeps.launcher import SweepOptions, apply_options

    parse = build_parser().parse_args
    assert parse(["sweep", "smoke"]).gpus_per_trial is None  # the spec's, else auto
    assert parse(["sweep", "smoke", "--gpus-per-trial", "auto"]).gpus_per_trial == "auto"
    assert parse(["sweep", "smoke", "--gpus-per-trial", "2"]).gpus_per_trial == 2.0
    with pytest.raises(SystemExit):
        parse(["sweep", "smoke", "--gpus-per-trial", "-1"])
    assert load_spec("smoke").resources["gpu"] == "auto"
    spec = apply_options(load_spec("smoke"), SweepOptions(gpus_per_trial=0.0))
    assert spec.resources["gpu"] == 0.0
    assert parse_spec({"resources": {"gpu": 1}}).resources == {"cpu": 1, "gpu": 1}
    with pytest.raises(ConfigError, match="resources.gpu must be a number >= 0 or auto"):
        parse_spec({"resources": {"gpu": "all"}})
