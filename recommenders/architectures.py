"""The generative recommender's architectures by ``model.arch``; one ``build_model`` for every caller."""
from __future__ import annotations

from recommenders.decoder_only import DecoderOnlyModel
from recommenders.model import TigerModel, TigerModelConfig

# arch -> (model class, whether its history reads each item as [BOS, codes]: SemanticIdVocab(separators=...))
ARCHITECTURES = {
    "encoder_decoder": (TigerModel, False),
    "decoder_only": (DecoderOnlyModel, True),
}


def build_model(cfg: TigerModelConfig):
    return ARCHITECTURES[cfg.arch][0](cfg)


def uses_separators(arch: str) -> bool:
    return ARCHITECTURES[arch][1]
