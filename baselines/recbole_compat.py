"""The one place that makes RecBole 1.2.0 work on current NumPy / torch and keeps it out of the CWD.

Import RecBole only through this module (``from baselines.recbole_compat import recbole``), or call
:func:`apply` before importing it: the patches are applied when this module is imported, so a fresh
interpreter (a Ray trial worker) that imports the adapter gets them too.

What it patches and why (see DESIGN.md, "RecBole on current Python"):

- NumPy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` (and long ago ``np.float``,
  ``np.int``, ...). RecBole's ``Config.compatibility_settings`` reads the former and its evaluator
  uses the latter (``np.float`` in NDCG/MAP, ``np.bool``, ``np.long``): restore them as aliases.
- RecBole's checkpoints pickle its ``Config``, so reading one needs an unpickler that runs code
  (DESIGN.md, "Files that can carry code"). The harness never reads one: the adapter keeps the best
  weights in memory (its trainer's ``_save_checkpoint`` writes no file, ``evaluate`` is called with
  ``load_best_model=False``, ``resume_checkpoint`` is never called). In case something does call
  RecBole's ``evaluate(load_best_model=True)`` / ``resume_checkpoint``, RecBole's trainer module
  gets a ``torch`` whose ``load`` always passes ``weights_only=True`` (also over an explicit False
  and over ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), and a file that needs more is a ``UserError``.
- RecBole's ``Trainer`` opens a TensorBoard ``SummaryWriter`` under ``./log_tensorboard`` in the
  current working directory: the trainer module gets a writer that records nothing.
- Importing RecBole's sequential models runs ``torch.autograd.set_detect_anomaly(True)`` (in
  ``sine.py``), process-wide: every op then records a Python stack trace (SASRec trains several
  times slower, and so would anything else in the process). The import is done here and the
  previous anomaly-mode setting restored.
- ``Config`` reads ``--key=value`` from ``sys.argv`` (overriding ``config_dict``) and sets
  ``CUDA_VISIBLE_DEVICES`` process-wide: :func:`make_config` clears the former and restores the
  latter around it.
"""
from __future__ import annotations

import contextlib
import os
import pickle  # for pickle.UnpicklingError only: nothing here unpickles
import sys
import types
import warnings
from typing import Any

import numpy as np

from bench.errors import UserError

# name -> replacement; only set where NumPy no longer has the name (NumPy 1.x keeps its own)
_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "float": float,
    "int": int,
    "complex": complex,
    "object": object,
    "str": str,
    "bool": bool,
    "long": np.int64,
}


def _restore_numpy_aliases() -> None:
    for name, value in _NUMPY_ALIASES.items():
        with warnings.catch_warnings():  # NumPy warns on some removed names before raising
            warnings.simplefilter("ignore")
            missing = not hasattr(np, name)
        if missing:
            setattr(np, name, value)


class _NullSummaryWriter:
    """Stands in for TensorBoard's SummaryWriter: accepts every call, writes nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _null_tensorboard(logger=None) -> _NullSummaryWriter:
    return _NullSummaryWriter()


class _TorchForRecBole(types.ModuleType):
    """``torch`` as RecBole's trainer module sees it: ``load`` reads tensors and plain data only."""

    def __init__(self, torch_module):
        super().__init__("torch")
        self._torch = torch_module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._torch, name)

    def load(self, f, *args, **kwargs):
        kwargs["weights_only"] = True
        try:
            return self._torch.load(f, *args, **kwargs)
        except pickle.UnpicklingError as err:
            raise UserError(
                f"{f}: not loaded, it holds more than tensors and plain data (RecBole's checkpoints pickle "
                f"its Config, and unpickling such a file could run code); the harness keeps RecBole's best "
                f"weights in memory and never reads a RecBole checkpoint"
            ) from err


_applied = False


def apply() -> None:
    """Apply every patch (idempotent). Safe to call before or after RecBole is imported."""
    global _applied
    _restore_numpy_aliases()
    if _applied:
        return
    import torch

    anomaly = torch.is_anomaly_enabled()
    import recbole.model.sequential_recommender  # noqa: F401  (sets anomaly mode on import)
    import recbole.trainer.trainer as trainer_module

    torch.autograd.set_detect_anomaly(anomaly)

    trainer_module.get_tensorboard = _null_tensorboard
    if not isinstance(trainer_module.torch, _TorchForRecBole):
        trainer_module.torch = _TorchForRecBole(torch)
    _applied = True


@contextlib.contextmanager
def _clean_process_state():
    """No command-line arguments for RecBole to read; CUDA_VISIBLE_DEVICES as it was before."""
    saved_argv = sys.argv
    saved_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    sys.argv = [saved_argv[0] if saved_argv else "bench"]
    try:
        yield
    finally:
        sys.argv = saved_argv
        if saved_cuda is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved_cuda


def make_config(model: str, dataset: str, config_dict: dict, device: str = "cpu"):
    """RecBole's ``Config`` built from ``config_dict`` only, on ``device``, without process side effects."""
    import torch
    from recbole.config import Config

    apply()
    # settle torch's view of the GPUs before Config rewrites CUDA_VISIBLE_DEVICES (restored after)
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    config_dict = dict(config_dict)
    config_dict["use_gpu"] = cuda
    with _clean_process_state():
        config = Config(model=model, dataset=dataset, config_dict=config_dict)
    config["device"] = torch.device(device if cuda else "cpu")
    config["use_gpu"] = cuda
    return config


_restore_numpy_aliases()
