"""write_video leaves a complete mp4 or none: a write stopped midway keeps what was at the path before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vtok.data import open_video, write_video
from vtok.data.synthetic import synthetic_clip


def _frames_then(error: BaseException, count: int = 60) -> Iterator[np.ndarray]:
    """``count`` frames, then ``error``: more frames than x264 holds back, so packets reach the file first."""
    clip = synthetic_clip(count, 32, 32, seed=4)
    for frame in clip:
        yield frame.numpy()
    raise error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("the decoder failed")])
def test_a_write_stopped_midway_leaves_the_earlier_video_and_no_partial_file(error: BaseException, tmp_path: Path) -> None:
    """Frames were muxed straight into the path: Ctrl-C in `vtok detokenize` (or a source that failed midway)
    left a truncated mp4 there, in place of the one an earlier run wrote."""
    path = tmp_path / "video.mp4"
    write_video(path, synthetic_clip(9, 32, 32, seed=1))
    before = path.read_bytes()
    with pytest.raises(type(error)):
        write_video(path, _frames_then(error))
    assert path.read_bytes() == before and open_video(path).num_frames == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]
    assert write_video(path, synthetic_clip(5, 32, 32, seed=2)) == path and open_video(path).num_frames == 5
