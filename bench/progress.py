"""Progress lines on stderr (stdout carries results): one per step that takes more than a moment."""
from __future__ import annotations

import sys


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)
