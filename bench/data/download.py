"""Fetch the raw Amazon 2014 files; offline it fails at once with a clear message."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from bench.atomic import atomic_write
from bench.data.types import DataError

TIMEOUT_S = 15


def download(url: str, target: Path) -> Path:
    """Download ``url`` to ``target`` via a temp file, so a crash leaves no partial file behind."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (urllib.error.URLError, socket.timeout, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DataError(
            f"cannot download {url}: {reason}. This machine seems to be offline; download the file "
            f"elsewhere and put it in {target.parent}"
        ) from err
    total = int(response.headers.get("Content-Length") or 0) or None

    def copy(out) -> None:
        with response, tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))

    return atomic_write(target, copy)


def download_dataset(spec, folder: Path, name: str | None = None) -> list[Path]:
    """Download every raw file of a dataset spec (one with ``urls()``) into ``folder``."""
    if not hasattr(spec, "urls"):
        raise DataError(f"dataset {name or folder.name!r} needs no download (it ships with a package or is generated)")
    return [download(url, folder / url.rsplit("/", 1)[-1]) for url in spec.urls()]


