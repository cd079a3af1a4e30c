"""Discrete bottlenecks for video latents. Never imports lightning, wandb or vtok's training code."""

from vtok.tokenizers.base import DiscreteQuantizer
from vtok.tokenizers.fsq import FSQ
from vtok.tokenizers.group_lfq import GroupLFQ
from vtok.tokenizers.output import QuantizerOutput

__all__ = ["FSQ", "DiscreteQuantizer", "GroupLFQ", "QuantizerOutput"]
