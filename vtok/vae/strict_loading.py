"""``from_pretrained`` that refuses incomplete weights instead of leaving some layers random.

diffusers only warns when a checkpoint lacks tensors the model has (or holds tensors of another
shape): depending on ``low_cpu_mem_usage`` those layers stay freshly initialised or on the meta
device, and a damaged or mismatched export would then encode and decode noise without an error.
"""

from __future__ import annotations

from typing import Any

LOADING_PROBLEMS = {
    "missing_keys": "tensors missing from the weights",
    "mismatched_keys": "tensors of another shape than the config builds",
    "unexpected_keys": "tensors the config does not build",
    "error_msgs": "loading errors",
}


class IncompleteWeightsError(ValueError):
    """Weights that do not cover the model their config builds, tensor for tensor."""


class StrictLoadingMixin:
    """Mixed into a diffusers ``ModelMixin``: ``from_pretrained`` raises :class:`IncompleteWeightsError`
    naming what did not load, unless every tensor of the model came from the weights file.
    """

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)  # type: ignore[misc]
        problems = [
            f"{len(info[key])} {what} (first: {', '.join(str(item) for item in info[key][:3])})"
            for key, what in LOADING_PROBLEMS.items()
            if info.get(key)
        ]
        if problems:
            where = args[0] if args else kwargs.get("pretrained_model_name_or_path", "the weights")
            raise IncompleteWeightsError(
                f"{where} does not match its config.json: {'; '.join(problems)}. "
                "Refusing to load a model with random layers; re-export it from its training checkpoint"
            )
        return (model, info) if wants_info else model
