"""The names a reader sees: one spelling of each model, protocol and arm in tables, figures, notebooks' titles and
the README, the names of the field rather than the project's. Record keys keep their spelling in JSON and macros
(``seed_exact``, ``map_seed``: SPEC §7)."""

from __future__ import annotations

MODELS = {
    "seed_exact": "original network",
    "rf_aware": "RF-aware network",
    "first_round_data": "original network, unbalanced data",
    "class_tied": "trained on class-tied sizes",
    "any_size": "trained on any-size data",
}
PROTOCOLS = {"seed": "original protocol", "standard": "standard protocol"}
PROTOCOL_CUTS = {"seed": "conf $\\geq$ 0.5", "standard": "conf $\\geq$ 0.001"}
# words of arm names the records keep (their run names) and what a reader reads instead
_WORDS = (("(seed's)", "(original)"), ("seed's", "original"), ("(seed)", "(original)"))


def model_name(key: str) -> str:
    """A model's or an arm's name for the reader: :data:`MODELS` where it has one, else the arm's own name with the
    project's words replaced (``"MSE loss (seed's)"`` -> ``"MSE loss (original)"``)."""
    if key in MODELS:
        return MODELS[key]
    for old, new in _WORDS:
        key = key.replace(old, new)
    return key


def protocol_name(protocol: str) -> str:
    """``"seed"`` -> ``"original protocol"``, ``"standard"`` -> ``"standard protocol"``."""
    return PROTOCOLS[protocol]
