"""Video data: readers, clip sampling, transforms, datasets (files or streamed shards), sample
clips, ``vtok prepare``'s scanning, and the data module.

Knows nothing of networks or the training loop; its only Lightning import is the data module.
"""

from vtok.data.clips import ClipSpec, VideoLength
from vtok.data.dataset import ClipInfo, SkippingDataset, VideoClipDataset, WholeVideoDataset, video_clip_with_info
from vtok.data.errors import UnusableFileError
from vtok.data.images import ImageDataset
from vtok.data.manifest import VideoInfo
from vtok.data.readers import VideoDecodeError, open_video, open_video_bytes
from vtok.data.sampler import EpochSampler
from vtok.data.shard_split import split_shards
from vtok.data.sources import file_key, list_files, list_records
from vtok.data.streaming import ShardClipDataset
from vtok.data.synthetic import synthetic_clip, write_sample_clips
from vtok.data.writers import to_uint8_frames, write_video

__all__ = [
    "ClipInfo",
    "ClipSpec",
    "EpochSampler",
    "ImageDataset",
    "ShardClipDataset",
    "SkippingDataset",
    "UnusableFileError",
    "VideoClipDataset",
    "VideoDecodeError",
    "VideoInfo",
    "VideoLength",
    "WholeVideoDataset",
    "file_key",
    "list_files",
    "list_records",
    "open_video",
    "open_video_bytes",
    "split_shards",
    "synthetic_clip",
    "video_clip_with_info",
    "to_uint8_frames",
    "write_sample_clips",
    "write_video",
]
