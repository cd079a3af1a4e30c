"""The video autoencoder network. Never imports lightning, wandb or vtok's training code."""

from vtok.vae.autoencoder import AutoencoderOutput, VideoAutoencoder
from vtok.vae.compression import Compression
from vtok.vae.tokens import FirstFrameTokens, map_tokens, regular_indices

__all__ = ["AutoencoderOutput", "Compression", "FirstFrameTokens", "VideoAutoencoder", "map_tokens", "regular_indices"]
