"""Self-supervised objectives."""

from ssl_models.losses.barlow_twins_loss import BarlowTwinsLoss
from ssl_models.losses.byol_loss import BYOLLoss
from ssl_models.losses.clip import CLIPLoss
from ssl_models.losses.collapse_monitor import collapse_std
from ssl_models.losses.dino_loss import DINOLoss
from ssl_models.losses.info_nce_queue import InfoNCEQueueLoss
from ssl_models.losses.mae_loss import MAELoss, patchify
from ssl_models.losses.moco_v3_loss import MoCoV3Loss
from ssl_models.losses.nt_xent import NTXentLoss
from ssl_models.losses.simsiam_loss import SimSiamLoss
from ssl_models.losses.vicreg_loss import VICRegLoss

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "CLIPLoss",
    "DINOLoss",
    "InfoNCEQueueLoss",
    "MAELoss",
    "MoCoV3Loss",
    "NTXentLoss",
    "SimSiamLoss",
    "VICRegLoss",
    "collapse_std",
    "patchify",
]
