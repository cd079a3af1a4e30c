"""The video autoencoder network. Never imports lightning, wandb or vtok's training code."""

from vtok.vae.autoencoder import AutoencoderOutput, VideoAutoencoder
from vtok.vae.compression import Compression

__all__ = ["AutoencoderOutput", "Compression", "VideoAutoencoder"]
