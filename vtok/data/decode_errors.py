"""The errors of reading a video: a file that cannot be opened or decoded, and one whose frame size
changes part-way (spliced captures), which no fixed-size clip can hold. Both are skipped and counted
by the datasets and rejected with their reason by ``vtok prepare``."""

from __future__ import annotations

from vtok.data.errors import UnusableFileError


class VideoDecodeError(UnusableFileError):
    """A video file that cannot be opened or decoded."""


class FrameSizeChangeError(VideoDecodeError):
    """A video whose frames change size part-way: the file is unusable, not damaged after that frame."""
