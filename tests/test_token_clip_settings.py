"""A token file records the clip it holds (its first frame, stride and frame rate), and `vtok detokenize` plays it
back at that rate. Every other tokenize test takes whole videos at stride 1, where a wrong start, stride or rate is
still right (found by a mutation review: recording stride 1, the source's rate or frame 0 passed the suite)."""

from __future__ import annotations

import json
from pathlib import Path

from vtok.cli import main
from vtok.data import open_video
from vtok.tokenfiles import read_token_file


def test_a_centred_clip_at_half_the_rate_is_recorded_and_played_back_so(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    source = sorted(video_folder.glob("*.mp4"))[0]
    (videos / source.name).symlink_to(source)  # 20 frames at 24 fps
    out = tmp_path / "tokens"
    main(["tokenize", "--model", str(fsq_run["checkpoint"]), "--data", str(videos), "--out", str(out), "--frames", "5",
          "--fps", "12"])  # fmt: skip
    (entry,) = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    _, metadata = read_token_file(out / entry["tokens"])
    # 5 frames at stride 2 span 9 of the 20: the centred clip starts at frame 5
    assert (metadata["first_frame"], metadata["frames"], metadata["stride"], metadata["fps"]) == ("5", "5", "2", "12.0")
    movie = tmp_path / "decoded.mp4"
    main(["detokenize", "--model", str(fsq_run["export"]), "--tokens", str(out / entry["tokens"]), "--out", str(movie)])
    reader = open_video(movie)
    assert (reader.num_frames, reader.fps) == (5, 12.0)
