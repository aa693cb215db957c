"""The plug-in registries: every method and tokenizer by name, one registration line each.

Entries are lazy ``"module:Class"`` paths: the ground floor (config checks, the runner) reaches a
plug-in by name at run time and imports no plug-in package itself. Datasets register in
:mod:`bench.data` (they are part of the ground floor).
"""
from __future__ import annotations

from bench.registry import Registry

# display: row name stem in tables; order: position in the baseline / generative group of tables;
# sections: the config sections the method reads (tables apply a section's keys to these methods only)
# id_based: the method knows items only from interactions (no learned embedding for an unseen one)
# (the keys that fix a method's training budget are the keys with role "budget" in its sections:
# bench.config_schema.method_budget_keys)
METHODS = Registry("method", base="bench.methods:Recommender")
RECBOLE = {"sections": ("baseline",), "id_based": True}
METHODS.register("random", "baselines.simple:RandomItems", display="Random", group="baseline", order=0)
METHODS.register("pop", "baselines.simple:MostPopular", display="Pop", group="baseline", order=1,
                 extras={"id_based": True})
METHODS.register("gru4rec", "baselines.recbole_models:GRU4Rec", display="GRU4Rec", group="baseline", order=2,
                 extras=RECBOLE)
METHODS.register("bert4rec", "baselines.recbole_models:BERT4Rec", display="BERT4Rec", group="baseline", order=3,
                 extras=RECBOLE)
METHODS.register("sasrec", "baselines.recbole_models:SASRec", display="SASRec", group="baseline", order=4,
                 extras=RECBOLE)
METHODS.register("semantic_knn", "baselines.semantic_knn:SemanticKNN", display="Semantic-KNN", group="baseline",
                 order=5, extras={"sections": ("baseline", "embed")},
                 defaults={"history": 5, "aggregate": "mean", "batch_users": 1024})
# the method `--tokenizer NAME` runs: the shared generative recommender, over that tokenizer's IDs
TOKENIZED_METHOD = "tiger"
METHODS.register(TOKENIZED_METHOD, "recommenders.tiger:TigerRecommender", display="TIGER", group="generative", order=0,
                 extras={"sections": ("model", "train", "decode", "tokenizer", "embed")})

# Parameters of each tokenizer: the section tokenizer.<name>. Built-ins keep their defaults in
# bench/configs/defaults/tokenizer.yaml; a plug-in registered elsewhere passes ``defaults={...}``.
TOKENIZERS = Registry("tokenizer", section="tokenizer", base="tokenizers_zoo.base:Tokenizer")
TOKENIZERS.register("random_id", "tokenizers_zoo.random_id:RandomIDTokenizer", display="Random ID", order=0)
TOKENIZERS.register("lsh", "tokenizers_zoo.lsh:LSHTokenizer", display="LSH", order=1)
TOKENIZERS.register("rqvae", "tokenizers_zoo.rqvae:RQVAETokenizer", display="RQ-VAE", order=2)
# reads: config sections a tokenizer's fit reads besides its own tokenizer.<name> (a run's identity keeps them)
TOKENIZERS.register("letter", "tokenizers_zoo.letter:LetterTokenizer", display="LETTER", order=3,
                    extras={"reads": ("baseline",)})  # its CF embeddings: a SASRec trained by baseline (+ cf_embed)
TOKENIZERS.register("rqkmeans", "tokenizers_zoo.rqkmeans:RQKMeansTokenizer", display="RQ-KMeans", order=4)

