"""Training: the LightningModule, its optimiser settings and callbacks."""

from vtok.training.codebook import CodebookMonitor
from vtok.training.empty_epoch import EmptyEpochGuard, NoTrainingBatchesError
from vtok.training.final_checkpoint import FinalStepCheckpoint
from vtok.training.loader_wait import LoaderWaitMonitor
from vtok.training.module import AutoencoderModule
from vtok.training.optim import OptimizerConfig
from vtok.training.pictures import ReconstructionPictures
from vtok.training.stop_on_signal import StopOnSignal
from vtok.training.wandb_logger import OfflineFirstWandbLogger

__all__ = [
    "AutoencoderModule", "CodebookMonitor", "EmptyEpochGuard", "FinalStepCheckpoint", "LoaderWaitMonitor", "NoTrainingBatchesError",
    "OfflineFirstWandbLogger", "OptimizerConfig", "ReconstructionPictures", "StopOnSignal",
]
