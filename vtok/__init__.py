"""vtok: train, evaluate and export compressive video autoencoders and tokenizers."""

from vtok.vae import AutoencoderOutput, Compression, VideoAutoencoder

__version__ = "0.1.0"
__all__ = ["AutoencoderOutput", "Compression", "VideoAutoencoder", "__version__"]
