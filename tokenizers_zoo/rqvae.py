"""TIGER's RQ-VAE tokenizer (Rajput et al., 2023), and the trainer LETTER builds on.

Model: an MLP encoder ``d -> 512 -> 256 -> 128 -> 32`` (ReLU between layers) maps an item's text
embedding x to a latent z; residual quantisation over L codebooks of K vectors picks, level by
level, the code nearest to the residual (``r_0 = z``, ``c_l = argmin_k ||r_l - e_{l,k}||``,
``r_{l+1} = r_l - e_{l,c_l}``); the quantised latent ``ẑ = Σ_l e_{l,c_l}`` is decoded by the mirrored
MLP. Gradients cross the quantiser by the straight-through estimator (the decoder reads
``z + sg[ẑ - z]``).

Loss::

    ||x - x̂||²  +  Σ_l ( ||sg[r_l] - e_{l,c_l}||²  +  commitment · ||r_l - sg[e_{l,c_l}]||² )

with every squared norm taken as a mean squared error (averaged over batch and dimensions), as in
the LC-Rec/LETTER reference code: summed over dimensions, the gradients are 384x (reconstruction)
and 32x (quantisation) larger and Adagrad lr 0.4 diverges in the first epoch. The residuals are
not detached between levels (``r_{l+1} = r_l - e_{l,c_l}``), exactly as the formula reads.

Codebooks are initialised by k-means on the residuals of the first training batch. Paper
settings: 3 × 256 × 32, commitment (TIGER's beta) 0.25, batch 1024, Adagrad lr 0.4, 20k epochs.
Adagrad's accumulator starts at 0.1 (``adagrad_initial_accumulator``; TF/Keras/optax default,
which TIGER, a Google model, presumably used); PyTorch's 0 makes the first step lr · sign(grad).

``dead_code_reset`` (off by default and in the paper profile) is a documented deviation: every
``dead_code_every`` epochs, codes no item chose during the epoch are re-seeded from residuals of
random items (never after the last epoch, so the final codes are the trained assignment), and with
``dead_code_until: N`` only during the first N epochs (a warm-up: afterwards the losses alone decide
which codes stay in use).
``standardize`` (off by default) z-scores every input dimension before the encoder.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import numpy as np

from bench.config_schema import CodebookSize, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Section
from bench.device import resolve_device
from tokenizers_zoo.base import (
    TokenizerError,
    Tokenizer,
    TrainingDivergedError,
    check_embeddings,
    progress_bar,
    seeded_torch,
)

OPTIMIZERS = ("adagrad", "adam", "adamw", "sgd")
EVAL_CHUNK = 8192


def _torch():
    import torch

    return torch


def build_mlp(dims: list[int]):
    """Linear layers with ReLU between them (none after the last)."""
    nn = _torch().nn
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _make_model_class():
    torch = _torch()
    nn = torch.nn

    class RQVAEModel(nn.Module):
        def __init__(self, in_dim: int, hidden: list[int], code_dim: int, levels: int, codebook_size: int):
            super().__init__()
            self.encoder = build_mlp([in_dim, *hidden, code_dim])
            self.decoder = build_mlp([code_dim, *reversed(hidden), in_dim])
            bound = 1.0 / codebook_size  # LC-Rec/LETTER's uniform init, used without k-means init
            self.codebooks = nn.Parameter(torch.empty(levels, codebook_size, code_dim).uniform_(-bound, bound))

        def quantize(self, z):
            """Residual quantisation of ``z`` [B, D].

            Returns (ẑ with gradients to the codebooks, codes [B, L], residuals r_l, chosen codes e_l).
            """
            residual = z
            z_hat = torch.zeros_like(z)
            codes, residuals, chosen = [], [], []
            for level in range(self.codebooks.shape[0]):
                codebook = self.codebooks[level]
                with torch.no_grad():
                    r = residual.detach()
                    distances = (r * r).sum(1, keepdim=True) - 2.0 * r @ codebook.t() + (codebook * codebook).sum(1)[None, :]
                    index = distances.argmin(dim=1)
                e = codebook[index]
                codes.append(index)
                residuals.append(residual)
                chosen.append(e)
                z_hat = z_hat + e
                residual = residual - e
            return z_hat, torch.stack(codes, dim=1), residuals, chosen

        def forward(self, x):
            z = self.encoder(x)
            z_hat, codes, residuals, chosen = self.quantize(z)
            z_st = z + (z_hat - z).detach()  # straight-through estimator
            x_hat = self.decoder(z_st)
            return {"z": z, "z_hat": z_hat, "z_st": z_st, "codes": codes, "residuals": residuals, "chosen": chosen, "x_hat": x_hat}

    return RQVAEModel


_MODEL_CLASS = None


def RQVAEModel(*args, **kwargs):  # noqa: N802 - a lazily defined nn.Module class
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        _MODEL_CLASS = _make_model_class()
    return _MODEL_CLASS(*args, **kwargs)


def kmeans_centres(points: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """``k`` k-means centres of ``points``; with fewer distinct points than ``k``, the rest are
    jittered copies of random points."""
    from sklearn.cluster import KMeans

    points = np.asarray(points, dtype=np.float64)
    rng = np.random.default_rng(seed)
    distinct = len(np.unique(points.round(decimals=7), axis=0))
    n_clusters = min(k, distinct)
    centres = KMeans(n_clusters=n_clusters, n_init=1, max_iter=int(iters), random_state=seed).fit(points).cluster_centers_
    if n_clusters < k:
        extra = points[rng.integers(0, len(points), size=k - n_clusters)]
        scale = points.std(axis=0).mean() * 1e-2 + 1e-6
        centres = np.concatenate([centres, extra + rng.normal(scale=scale, size=extra.shape)], axis=0)
    return centres.astype(np.float32)


class RQVAEParams(Section):
    levels: PositiveInt
    codebook_size: CodebookSize
    code_dim: PositiveInt
    hidden: list[PositiveInt]  # encoder layer widths (the decoder mirrors them)
    standardize: bool
    commitment: NonNegativeFloat
    epochs: NonNegativeInt  # 0 = codebooks from the k-means initialisation only
    batch_size: PositiveInt
    optimizer: Literal[OPTIMIZERS]
    lr: PositiveFloat
    adagrad_initial_accumulator: NonNegativeFloat
    weight_decay: NonNegativeFloat
    kmeans_init: bool
    kmeans_iters: PositiveInt
    dead_code_reset: bool
    dead_code_every: PositiveInt
    dead_code_until: Optional[PositiveInt]  # null = every epoch but the last


class RQVAETokenizer(Tokenizer):
    """TIGER's RQ-VAE. Subclasses add loss terms through :meth:`_extra_losses`."""

    name = "rqvae"
    version = 1  # bump when a change makes fitted rqvae codes differ
    collapse_is_error = True  # a learned codebook: collapse means a failed fit (tokenizer.allow_collapse)
    Params = RQVAEParams

    def _init_state(self) -> None:
        self.model = None
        self.in_dim: int | None = None
        self.input_mean: np.ndarray | None = None  # per-dimension input standardisation (``standardize``)
        self.input_std: np.ndarray | None = None

    @property
    def level_sizes(self) -> list[int]:
        return [self.hp.codebook_size] * self.hp.levels

    # -- hooks for LETTER ----------------------------------------------------------------

    def _prepare(self, x, cf, device) -> None:
        """Called once before training, after the model exists."""

    def _on_epoch_start(self, epoch: int) -> None:
        """Called at the start of every epoch, after the codebooks are initialised."""

    def _extra_losses(self, out: dict, batch, cf) -> dict:
        """Named (weight, loss) pairs added to the RQ-VAE loss."""
        return {}

    def _extra_parameters(self) -> list:
        return []

    def _finish(self, x, cf, out: dict) -> None:
        """Called after training with the eval-mode forward pass over all items."""

    # -- training --------------------------------------------------------------------------

    def _build_optimizer(self, parameters):
        torch = _torch()
        name = self.hp.optimizer.lower()
        lr, wd = self.hp.lr, self.hp.weight_decay
        if name == "adagrad":
            return torch.optim.Adagrad(
                parameters, lr=lr, weight_decay=wd,
                initial_accumulator_value=self.hp.adagrad_initial_accumulator,
            )
        if name == "adam":
            return torch.optim.Adam(parameters, lr=lr, weight_decay=wd)
        if name == "adamw":
            return torch.optim.AdamW(parameters, lr=lr, weight_decay=wd)
        return torch.optim.SGD(parameters, lr=lr, weight_decay=wd)

    def _init_codebooks(self, x_batch) -> None:
        """k-means on the first batch's residuals, level by level."""
        torch = _torch()
        with torch.no_grad():
            residual = self.model.encoder(x_batch)
            for level in range(self.levels):
                centres = kmeans_centres(
                    residual.cpu().numpy(), self.hp.codebook_size, self.hp.kmeans_iters, self.seed + level
                )
                self.model.codebooks.data[level] = torch.from_numpy(centres).to(residual.device)
                codebook = self.model.codebooks[level]
                distances = torch.cdist(residual, codebook)
                residual = residual - codebook[distances.argmin(dim=1)]

    def _reset_due(self, epoch: int, epochs: int) -> bool:
        """Whether dead codes are re-seeded after (0-based) ``epoch``."""
        params = self.hp
        until = params.dead_code_until
        return (
            params.dead_code_reset and (epoch + 1) % params.dead_code_every == 0
            and epoch + 1 < epochs and (until is None or epoch + 1 <= int(until))
        )

    def _reset_dead_codes(self, usage, x, generator) -> int:
        """Re-seed codes unused this epoch with residuals of random items (deviation; off by default)."""
        torch = _torch()
        reset = 0
        with torch.no_grad():
            sample = torch.randperm(len(x), generator=generator)[: min(len(x), 4096)].to(x.device)
            out = self.model(x[sample])
            for level in range(self.levels):
                dead = torch.nonzero(usage[level] == 0).flatten()
                if len(dead) == 0:
                    continue
                residuals = out["residuals"][level]
                pick = torch.randint(0, len(residuals), (len(dead),), generator=generator).to(x.device)
                self.model.codebooks.data[level, dead] = residuals[pick]
                reset += len(dead)
        return reset

    def _check_finite(self, loss, parts: dict, epoch: int, step: int) -> None:
        if not math.isfinite(loss):
            detail = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
            raise TrainingDivergedError(
                f"{self.name}: training loss became {loss} at epoch {epoch + 1}, step {step + 1} ({detail}); "
                f"training stopped. Lower tokenizer.{self.name}.lr (now {self.params['lr']}) or try another "
                f"tokenizer.{self.name}.optimizer (now {self.params['optimizer']})"
            )

    def _fit(self, item_emb: np.ndarray, cf_emb: np.ndarray | None) -> np.ndarray:
        torch = _torch()
        device = resolve_device(self.device)
        params = self.hp
        n_items, self.in_dim = item_emb.shape
        if params.standardize:
            self.input_mean = item_emb.mean(axis=0)
            self.input_std = item_emb.std(axis=0) + 1e-8
        else:
            self.input_mean = self.input_std = None
        raw_emb, item_emb = item_emb, self._standardize(item_emb)
        batch_size = min(params.batch_size, n_items)
        epochs = params.epochs
        with seeded_torch(self.seed):
            generator = torch.Generator().manual_seed(self.seed)
            self.model = RQVAEModel(self.in_dim, list(params.hidden), params.code_dim, params.levels, params.codebook_size).to(device)
            x = torch.from_numpy(np.ascontiguousarray(item_emb)).to(device)
            cf = torch.from_numpy(np.ascontiguousarray(cf_emb)).to(device) if cf_emb is not None else None
            self._prepare(x, cf, device)
            optimizer = self._build_optimizer(list(self.model.parameters()) + self._extra_parameters())
            commitment = params.commitment
            history = []
            log_every = max(1, epochs // 100)
            initialised = not params.kmeans_init
            dead_resets = 0
            last = {}
            with progress_bar(epochs, f"fitting {self.name}", self.progress) as bar:
                for epoch in range(epochs):
                    order = torch.randperm(n_items, generator=generator).to(device)
                    batches = order.split(batch_size)
                    if not initialised:
                        self.model.eval()
                        self._init_codebooks(x[batches[0]])
                        initialised = True
                    self.model.train()
                    self._on_epoch_start(epoch)
                    usage = torch.zeros(self.levels, params.codebook_size, dtype=torch.long, device=device)
                    sums: dict[str, float] = {}
                    for step, batch in enumerate(batches):
                        xb = x[batch]
                        out = self.model(xb)
                        recon = ((out["x_hat"] - xb) ** 2).mean()
                        codebook_loss = sum(((r.detach() - e) ** 2).mean() for r, e in zip(out["residuals"], out["chosen"]))
                        commit_loss = sum(((r - e.detach()) ** 2).mean() for r, e in zip(out["residuals"], out["chosen"]))
                        loss = recon + codebook_loss + commitment * commit_loss
                        parts = {"recon": recon, "codebook": codebook_loss, "commit": commit_loss}
                        for name, (weight, value) in self._extra_losses(out, batch, cf).items():
                            loss = loss + weight * value
                            parts[name] = value
                        parts_value = {k: float(v.detach()) for k, v in parts.items()}
                        loss_value = float(loss.detach())
                        self._check_finite(loss_value, parts_value, epoch, step)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        for level in range(self.levels):
                            usage[level] += torch.bincount(out["codes"][:, level], minlength=params.codebook_size)
                        sums["loss"] = sums.get("loss", 0.0) + loss_value * len(batch)
                        for k, v in parts_value.items():
                            sums[k] = sums.get(k, 0.0) + v * len(batch)
                    last = {k: v / n_items for k, v in sums.items()}
                    last["util_l1"] = float((usage[0] > 0).float().mean())
                    if self._reset_due(epoch, epochs):
                        dead_resets += self._reset_dead_codes(usage, x, generator)
                    if epoch % log_every == 0 or epoch == epochs - 1:
                        history.append({"epoch": epoch + 1, **{k: round(v, 6) for k, v in last.items()}})
                    bar.update(1)
                    bar.set_postfix(loss=f"{last['loss']:.4g}", recon=f"{last['recon']:.4g}", util1=f"{last['util_l1']:.2f}", refresh=False)
            if not initialised:  # zero epochs: still give the codebooks a data-driven start
                self.model.eval()
                self._init_codebooks(x[torch.randperm(n_items, generator=generator)[:batch_size].to(device)])
            self.model.eval()
            out = self._forward_all(x)
            x_hat = out["x_hat"]
            if self.input_mean is not None:  # report the error in the original embedding space
                x_hat = x_hat * torch.from_numpy(self.input_std).to(device) + torch.from_numpy(self.input_mean).to(device)
            self.extra_stats = {
                "reconstruction_mse": float(((x_hat - torch.from_numpy(raw_emb).to(device)) ** 2).mean()),
                "quantization_mse": float(((out["z"] - out["z_hat"]) ** 2).mean()),
            }
            self._finish(x, cf, out)
            self.info.update({"epochs": epochs, "device": device, "final": {k: round(v, 6) for k, v in last.items()}, "history": history})
            if params.dead_code_reset:
                self.info["dead_codes_reset"] = int(dead_resets)
            self.model = self.model.cpu()
            return out["codes"].cpu().numpy()

    def _forward_all(self, x) -> dict:
        """Eval-mode forward pass over all rows of ``x`` in chunks; tensors concatenated."""
        torch = _torch()
        keys = ("z", "z_hat", "codes", "x_hat")
        parts = {k: [] for k in keys}
        with torch.no_grad():
            for start in range(0, len(x), EVAL_CHUNK):
                out = self.model(x[start:start + EVAL_CHUNK])
                for k in keys:
                    parts[k].append(out[k])
        return {k: torch.cat(v) for k, v in parts.items()}

    def _standardize(self, x: np.ndarray) -> np.ndarray:
        if self.input_mean is None:
            return x
        return ((x - self.input_mean) / self.input_std).astype(np.float32)

    def encode(self, item_emb: np.ndarray) -> np.ndarray:
        torch = _torch()
        if self.model is None:
            raise TokenizerError(f"the {self.name} tokenizer is not fitted yet")
        x = check_embeddings(item_emb, "item embeddings")
        if x.shape[1] != self.in_dim:
            raise TokenizerError(f"embeddings have dim {x.shape[1]}, the {self.name} encoder expects {self.in_dim}")
        x = self._standardize(x)
        self.model.eval()
        return self._forward_all(torch.from_numpy(np.ascontiguousarray(x)))["codes"].numpy()

    def _state(self) -> dict:
        if self.model is None:
            return {}
        state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        state["in_dim"] = _torch().tensor(self.in_dim)
        if self.input_mean is not None:
            state["input_mean"] = _torch().from_numpy(self.input_mean)
            state["input_std"] = _torch().from_numpy(self.input_std)
        return state

    def _load_state(self, state: dict) -> None:
        if "in_dim" not in state:
            return
        self.in_dim = int(state["in_dim"])
        if "input_mean" in state:
            self.input_mean = state["input_mean"].numpy()
            self.input_std = state["input_std"].numpy()
        p = self.params
        self.model = RQVAEModel(self.in_dim, list(p["hidden"]), p["code_dim"], p["levels"], p["codebook_size"])
        self.model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
        self.model.eval()
