"""Discrete bottlenecks for video latents. Never imports lightning, wandb or vtok's training code."""

from vtok.tokenizers.output import QuantizerOutput

__all__ = ["QuantizerOutput"]
