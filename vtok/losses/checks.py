"""Checks of the loss settings, made when a loss is built (before anything trains)."""

from __future__ import annotations


def refuse_negative(section: str, **settings: float) -> None:
    """Raises ``ValueError`` naming each of ``settings`` that is below 0: a negative weight makes its term one to
    maximise, a negative step count means nothing (``section``: the config's path to them, e.g. ``model.loss``)."""
    negative = [f"{section}.{name}={value}" for name, value in settings.items() if value < 0]
    if negative:
        raise ValueError(f"{', '.join(negative)}: loss weights and step counts must not be negative")
