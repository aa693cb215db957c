"""No file is unpickled (DESIGN.md, "Files that can carry code"): a crafted pickle planted where the
baselines could read one (RecBole's prepared-dataset folder, a RecBole checkpoint) runs no code, and
no module of the harness contains a loader that could."""
from __future__ import annotations

import ast
import io
import os
import pickle
import shlex
import tokenize
from pathlib import Path

import pytest

from bench.errors import UserError

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "baselines", "recommenders", "tokenizers_zoo", "sweeps")
FORBIDDEN = ("pickle.load", "weights_only=False", "allow_pickle=True")


class Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted cache file or checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps({"dataset": Payload(marker)}, protocol=pickle.HIGHEST_PROTOCOL)


def test_the_payload_runs_code_when_unpickled(tmp_path):
    """The planted files below are live: plain unpickling (pickle, or torch.load with
    weights_only=False) really creates the marker."""
    marker = tmp_path / "MARKER"
    pickle.loads(payload_bytes(marker))
    assert marker.exists()
    torch = pytest.importorskip("torch")
    marker.unlink()
    torch.save({"config": Payload(marker)}, tmp_path / "checkpoint.pth")
    torch.load(tmp_path / "checkpoint.pth", weights_only=False)
    assert marker.exists()


# --- the RecBole dataset folder --------------------------------------------------------------


def _recbole():
    torch = pytest.importorskip("torch")
    pytest.importorskip("recbole")
    return torch


@pytest.fixture
def one_torch_thread():
    torch = _recbole()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def plant(folder: Path, name: str, marker: Path) -> list[Path]:
    """A crafted pickle under every name the folder's files have or had (also the old cache file and
    RecBole's own saved-dataset name)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / n for n in ("prepared.pkl", f"{name}.inter", f"{name}.item", "key.json",
                                  f"{name}-SequentialDataset.pth", f"{name}-for-SASRec-dataloader.pth")]
    for path in paths:
        path.write_bytes(payload_bytes(marker))
    return paths


def test_a_planted_pickle_in_the_recbole_dataset_folder_never_runs(tmp_path, one_torch_thread):
    from baselines.recbole_adapter import check_targets
    from baselines.recbole_data import prepare
    from bench.data import load_dataset
    from bench.split import LeaveOneOutSplit

    marker = tmp_path / "MARKER"
    split = LeaveOneOutSplit(load_dataset("synthetic", options={"n_users": 60, "n_items": 40}))
    first = prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    planted = plant(first.folder, first.name, marker)  # also where the old cache kept its pickle
    again = prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    assert not marker.exists(), "a planted pickle in RecBole's dataset folder ran code"
    assert again.folder == first.folder and again.key == first.key and not again.cache_hit
    check_targets(again, split)  # rebuilt from the harness's own sequences, not from planted files
    # the folder was replaced as a whole: only this call's export is left, none of the planted files
    assert sorted(p.name for p in again.folder.iterdir()) == sorted([f"{again.name}.inter", f"{again.name}.item", "key.json"])
    assert all(p.read_bytes() != payload_bytes(marker) for p in again.folder.iterdir())
    assert not any(p.exists() for p in planted if p.name not in (f"{again.name}.inter", f"{again.name}.item", "key.json"))


def test_a_run_reads_no_pickle_and_loads_torch_files_weights_only(tmp_path, monkeypatch, one_torch_thread):
    """A whole SASRec run with crafted files planted in its dataset folder: no code runs, and every
    ``torch.load`` (if any) is called with ``weights_only=True``; nothing is unpickled."""
    torch = _recbole()
    from baselines.recbole_data import prepare
    from bench.config import resolve_config
    from bench.data import load_dataset
    from bench.runner import run
    from bench.split import LeaveOneOutSplit

    config = resolve_config("smoke", assignments=["baseline.epochs=1"], overrides={
        "method": "sasrec", "dataset": "synthetic", "device": "cpu",
        "results_dir": str(tmp_path / "runs"), "work_dir": str(tmp_path / "work")})
    dataset = load_dataset(config["dataset"], config.get("data_dir"), config["data"].get(config["dataset"]))
    split = LeaveOneOutSplit(dataset, max_history=int(config["split"]["max_history"]))
    exported = prepare(split.dataset.sequences, split.n_items, max_seq_len=int(config["baseline"]["max_seq_len"]),
                       split=split)
    marker = tmp_path / "MARKER"
    plant(exported.folder, exported.name, marker)

    loads, unpickled = [], []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    def refuse(*args, **kwargs):
        unpickled.append(args[:1])
        raise AssertionError("something unpickled a file")

    monkeypatch.setattr(torch, "load", recording_load)
    monkeypatch.setattr(pickle, "load", refuse)
    record = run(config, write=False)
    assert not marker.exists(), "a planted pickle ran code during a RecBole run"
    assert not unpickled
    assert all(w is True for w in loads), loads
    info = record["method_info"]
    assert info["dataset_cache"]["key"] == exported.key and not info["dataset_cache"]["hit"]
    assert info["recbole_agreement"]["agree"]
    work = tmp_path / "work" / record["run_id"]
    assert not [p for p in work.rglob("*") if p.is_file() and p.suffix == ".pth"], "RecBole wrote a checkpoint"


# --- RecBole checkpoints ---------------------------------------------------------------------


def _trainer(tmp_path):
    """RecBole's own Trainer (not the harness's in-memory one) on a tiny SASRec."""
    from baselines import recbole_compat
    from baselines.recbole_data import prepare
    from bench.data import load_dataset
    from bench.split import LeaveOneOutSplit
    from recbole.trainer import Trainer
    from recbole.utils import get_model

    split = LeaveOneOutSplit(load_dataset("synthetic", options={"n_users": 60, "n_items": 40}))
    data = prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    rb_config = recbole_compat.make_config("SASRec", data.name, {
        "data_path": str(data.folder.parent), "checkpoint_dir": str(tmp_path / "ckpt"), "hidden_size": 8,
        "inner_size": 16, "n_layers": 1, "n_heads": 1, "train_neg_sample_args": None, "state": "WARNING"})
    data.set_config(rb_config)
    model = get_model("SASRec")(rb_config, data.parts[0])
    return Trainer(rb_config, model), data


@pytest.mark.parametrize("reader", ["resume_checkpoint", "evaluate(load_best_model=True)"])
@pytest.mark.parametrize("force_no_weights_only", [False, True])
def test_a_planted_recbole_checkpoint_never_runs(tmp_path, monkeypatch, one_torch_thread, reader,
                                                 force_no_weights_only):
    """RecBole's own checkpoint readers (the harness calls neither) refuse a crafted checkpoint with a
    UserError, also when the environment asks torch to unpickle by default."""
    torch = _recbole()
    trainer, data = _trainer(tmp_path)
    marker = tmp_path / "MARKER"
    path = tmp_path / "SASRec-crafted.pth"
    torch.save({"config": Payload(marker), "epoch": 0, "cur_step": 0, "best_valid_score": 0.0,
                "state_dict": trainer.model.state_dict(), "other_parameter": None,
                "optimizer": trainer.optimizer.state_dict()}, path)
    if force_no_weights_only:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UserError, match="never reads a RecBole checkpoint"):
        if reader == "resume_checkpoint":
            trainer.resume_checkpoint(path)
        else:
            from recbole.data.utils import create_samplers, get_dataloader

            samplers = create_samplers(trainer.config, data.dataset, data.parts)
            loader = get_dataloader(trainer.config, "test")(trainer.config, data.parts[2], samplers[2], shuffle=False)
            trainer.evaluate(loader, load_best_model=True, model_file=str(path))
    assert not marker.exists(), "a crafted RecBole checkpoint ran code"


def test_recbole_trainer_reads_a_plain_weights_file(tmp_path, one_torch_thread):
    """What weights_only=True can read, RecBole's trainer still reads (tensors and plain data)."""
    torch = _recbole()
    import recbole.trainer.trainer as trainer_module
    from baselines import recbole_compat

    recbole_compat.apply()
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    loaded = trainer_module.torch.load(path, map_location="cpu", weights_only=False)  # False is overridden
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.ones(2))


# --- no loader that can run code, anywhere in the harness ----------------------------------------


def _code_text(path: Path) -> str:
    """``path`` without comments and docstrings (statement-level strings): only what runs."""
    kept, previous = [], tokenize.NEWLINE
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            continue
        if token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                                          tokenize.NL, tokenize.ENCODING):
            previous = token.type
            continue
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token.type
        kept.append(token.string)
    return " ".join(kept).replace(" = ", "=").replace(" . ", ".")


def _unsafe_calls(path: Path) -> list[str]:
    """Calls that can unpickle: pickle's loaders, ``torch.load`` without ``weights_only=True``,
    ``allow_pickle`` or ``weights_only`` set to anything but the safe constant."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = ast.unparse(func)
        keywords = {k.arg: k.value for k in node.keywords}
        where = f"{_shown(path)}:{node.lineno}: {name}(...)"
        if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "cloudpickle.load", "cloudpickle.loads",
                    "dill.load", "dill.loads", "joblib.load", "torch.serialization.load"):
            found.append(where)
        if name == "torch.load" and not (isinstance(keywords.get("weights_only"), ast.Constant)
                                         and keywords["weights_only"].value is True):
            found.append(where + " without weights_only=True")
        for key, safe in (("weights_only", True), ("allow_pickle", False)):
            if key in keywords and not (isinstance(keywords[key], ast.Constant) and keywords[key].value is safe):
                found.append(f"{where} with {key}={ast.unparse(keywords[key])}")
    return found


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _modules():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def test_no_module_of_the_harness_can_unpickle_a_file():
    modules = list(_modules())
    assert {m.relative_to(REPO).parts[0] for m in modules} == set(PACKAGES)
    offending = []
    for path in modules:
        text = _code_text(path)
        offending += [f"{_shown(path)}: {word}" for word in FORBIDDEN if word in text]
        offending += _unsafe_calls(path)
    assert not offending, "loaders that can run code from a file:\n" + "\n".join(offending)


def test_the_source_check_sees_what_it_should(tmp_path):
    """The check itself: code is caught, comments and docstrings are not."""
    sample = tmp_path / "sample.py"
    sample.write_text('"""Never pickle.load or weights_only=False here."""\n'
                      "import pickle, torch, numpy as np  # pickle.load in a comment\n"
                      "def f(p, flag):\n"
                      "    '''allow_pickle=True in a docstring'''\n"
                      "    a = pickle.load(open(p, 'rb'))\n"
                      "    b = torch.load(p)\n"
                      "    c = torch.load(p, weights_only = False)\n"
                      "    d = np.load(p, allow_pickle=flag)\n"
                      "    e = torch.load(p, weights_only=True)\n")
    text = _code_text(sample)
    assert [w for w in FORBIDDEN if w in text] == ["pickle.load", "weights_only=False"]
    calls = _unsafe_calls(sample)
    assert len(calls) == 5 and sum("torch.load" in c for c in calls) == 3, calls  # line 7 twice
    assert not any(":9:" in c for c in calls)
