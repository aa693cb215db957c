"""A seeded synthetic dataset whose latent categories drive both item text and user sequences.

Items of a category form a chain; a user mostly stays in one category and mostly moves to the
next item of the chain. Item text names the category, so text embeddings cluster by category.
A working tokenizer + sequential recommender must therefore beat popularity and random on it.
"""
from __future__ import annotations

import numpy as np

from bench.data.types import SequenceDataset

CATEGORIES = [
    ("camping", ["tent", "lantern", "sleeping bag", "camp stove"]),
    ("baking", ["whisk", "cake pan", "rolling pin", "mixing bowl"]),
    ("skincare", ["face cream", "serum", "cleanser", "toner"]),
    ("cycling", ["helmet", "bike light", "saddle", "water bottle cage"]),
    ("gardening", ["trowel", "pruning shears", "watering can", "seed tray"]),
    ("photography", ["tripod", "lens filter", "camera strap", "flash diffuser"]),
    ("fishing", ["fishing rod", "tackle box", "reel", "lure kit"]),
    ("yoga", ["yoga mat", "foam block", "strap", "meditation cushion"]),
    ("coffee", ["grinder", "french press", "pour-over kettle", "espresso tamper"]),
    ("painting", ["brush set", "easel", "palette knife", "acrylic paints"]),
    ("knitting", ["knitting needles", "wool yarn", "stitch markers", "row counter"]),
    ("swimming", ["goggles", "swim cap", "kickboard", "fins"]),
]
ADJECTIVES = ["classic", "compact", "premium", "lightweight", "durable", "deluxe", "travel", "pro"]


def generate_synthetic(
    n_users: int = 600,
    n_items: int = 240,
    n_categories: int = 8,
    min_length: int = 5,
    max_length: int = 20,
    p_next: float = 0.8,
    p_stay: float = 0.9,
    seed: int = 0,
    name: str = "synthetic",
) -> SequenceDataset:
    if not 1 <= n_categories <= len(CATEGORIES):
        raise ValueError(f"n_categories must be in 1..{len(CATEGORIES)}")
    if n_items < n_categories:
        raise ValueError("n_items must be at least n_categories")
    rng = np.random.default_rng(seed)
    category_of = rng.permutation(np.arange(n_items) % n_categories)
    chains = [np.flatnonzero(category_of == c) for c in range(n_categories)]
    position = np.empty(n_items, dtype=np.int64)
    for chain in chains:
        position[chain] = np.arange(len(chain))

    sequences = []
    for _ in range(n_users):
        length = int(rng.integers(min_length, max_length + 1))
        category = int(rng.integers(n_categories))
        item = int(rng.choice(chains[category]))
        sequence = [item]
        while len(sequence) < length:
            if rng.random() > p_stay:
                category = int(rng.integers(n_categories))
                item = int(rng.choice(chains[category]))
            elif rng.random() < p_next:
                chain = chains[category_of[item]]
                item = int(chain[(position[item] + 1) % len(chain)])
            else:
                item = int(rng.choice(chains[category_of[item]]))
            sequence.append(item)
        sequences.append(np.asarray(sequence, dtype=np.int64))

    item_meta = []
    for i in range(n_items):
        word, nouns = CATEGORIES[category_of[i]]
        noun = nouns[position[i] % len(nouns)]
        adjective = ADJECTIVES[(position[i] // len(nouns)) % len(ADJECTIVES)]
        item_meta.append(
            {"title": f"{adjective} {noun} no. {position[i]}", "categories": [[word]], "category": int(category_of[i])}
        )
    return SequenceDataset(
        name,
        user_ids=[str(u) for u in range(n_users)],
        item_ids=[str(i) for i in range(n_items)],
        sequences=sequences,
        item_meta=item_meta,
        source=f"generated (seed {seed})",
    )
