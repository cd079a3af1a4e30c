"""Video data: readers, clip sampling, transforms, datasets, sample clips and the data module.

Knows nothing of networks or the training loop; its only Lightning import is the data module.
"""

from vtok.data.clips import ClipSpec
from vtok.data.dataset import ClipInfo, SkippingDataset, VideoClipDataset, WholeVideoDataset
from vtok.data.errors import UnusableFileError
from vtok.data.images import ImageDataset
from vtok.data.readers import VideoDecodeError, open_video
from vtok.data.sampler import EpochSampler
from vtok.data.sources import file_key, list_files
from vtok.data.synthetic import synthetic_clip, write_sample_clips
from vtok.data.writers import to_uint8_frames, write_video

__all__ = [
    "ClipInfo",
    "ClipSpec",
    "EpochSampler",
    "ImageDataset",
    "SkippingDataset",
    "UnusableFileError",
    "VideoClipDataset",
    "VideoDecodeError",
    "WholeVideoDataset",
    "file_key",
    "list_files",
    "open_video",
    "synthetic_clip",
    "to_uint8_frames",
    "write_sample_clips",
    "write_video",
]
