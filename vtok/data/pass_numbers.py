"""The epoch number of each training loader's next pass, kept with a checkpoint.

vtok's samplers and streams number their own passes (pass n draws epoch n's order, crops and flips), and a
checkpoint saved mid-epoch carries that number in the loaders' places. Lightning restores a checkpoint of an
epoch that had ended without the loaders' places, so the resumed run's passes started again at 0 and drew
the first epochs' clips, crops and order a second time. The data module saves these numbers beside the
places, in its own state, which Lightning always restores, and gives them to the next training loaders.
Loaders made anew during a run (``trainer.reload_dataloaders_every_n_epochs``) go on from the numbers of
those they replace: each new sampler started at pass 0, so every epoch drew epoch 0's clips, crops and order.
"""

from __future__ import annotations

from collections.abc import Sequence

from vtok.data.trained_state import TrainedStateLoader

NEXT_PASSES_KEY = "vtok_next_passes"  # in the data module's state: the next pass's epoch, per training loader


def next_passes(loaders: Sequence[TrainedStateLoader]) -> list[int | None]:
    """The epoch each loader's next pass takes (``None`` for one that does not number its passes)."""
    return [loader.next_pass() for loader in loaders]


def number_resumed_passes(loaders: Sequence[TrainedStateLoader], passes: Sequence[int | None] | None) -> None:
    """Numbers the loaders' next passes as a checkpoint (or the loaders they replace) left them (:func:`next_passes`);
    nothing for none (a new run, an older vtok's checkpoint) or for other loaders (images added or left out)."""
    if passes is None or len(passes) != len(loaders):
        return
    for loader, epoch in zip(loaders, passes):
        if epoch is not None:
            loader.start_passes_at(epoch)
