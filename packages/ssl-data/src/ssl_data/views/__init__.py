"""View generators: the augmented inputs each self-supervised method trains on."""

from ssl_data.views.barlow_twins import BarlowTwinsView
from ssl_data.views.byol import BYOLView
from ssl_data.views.jigsaw import JigsawView, jigsaw_permutations
from ssl_data.views.masked_patches import MaskedPatchView, random_patch_mask
from ssl_data.views.moco import MoCoV2View
from ssl_data.views.multi_crop import MultiCropView
from ssl_data.views.pipeline import ViewPipeline, contrastive_pipeline
from ssl_data.views.rotation import RotationView
from ssl_data.views.simclr import SimCLRView
from ssl_data.views.two_view import TwoViewAugmentation
from ssl_data.views.vicreg import VICRegView
from ssl_data.views.view_dataset import ViewDataset, collate_views

__all__ = [
    "BYOLView",
    "BarlowTwinsView",
    "JigsawView",
    "MaskedPatchView",
    "MoCoV2View",
    "MultiCropView",
    "RotationView",
    "SimCLRView",
    "TwoViewAugmentation",
    "VICRegView",
    "ViewDataset",
    "ViewPipeline",
    "collate_views",
    "contrastive_pipeline",
    "jigsaw_permutations",
    "random_patch_mask",
]
