"""Video data: readers, clip sampling, transforms, datasets, sample clips and the data module.

Knows nothing of networks or the training loop; its only Lightning import is the data module.
"""

from vtok.data.clips import ClipSpec
from vtok.data.dataset import SkippingDataset, VideoClipDataset
from vtok.data.errors import UnusableFileError
from vtok.data.images import ImageDataset
from vtok.data.readers import VideoDecodeError, open_video
from vtok.data.sampler import EpochSampler
from vtok.data.sources import list_files
from vtok.data.synthetic import synthetic_clip, write_sample_clips
from vtok.data.writers import write_video

__all__ = [
    "ClipSpec",
    "EpochSampler",
    "ImageDataset",
    "SkippingDataset",
    "UnusableFileError",
    "VideoClipDataset",
    "VideoDecodeError",
    "list_files",
    "open_video",
    "synthetic_clip",
    "write_sample_clips",
    "write_video",
]
