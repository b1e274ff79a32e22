"""ImageNet-1K (ILSVRC-2012) in the standard class-folder layout, read by the shared class-folder loader with the
paper's transforms: ``ROOT/train/n01440764/n01440764_10026.JPEG``, ``ROOT/val/n01440764/ILSVRC2012_val_00000293.JPEG``.

The val/ of the official tarball is flat (50,000 files, labels in the devkit); sort it into the 1,000 wnid folders
first, as timm and torchvision expect. A train/ without exactly 1,000 class folders (a partial copy) is an error;
use ``data=folder`` for subsets.
"""
from omegaconf import DictConfig

from ablate.data import DATASETS, DataBundle
from ablate.data.folder import image_folder_bundle, root_dir

NUM_CLASSES = 1000
LAYOUT = "an ImageNet-1K folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into class folders)"


@DATASETS.register("imagenet")
def imagenet(cfg: DictConfig) -> DataBundle:
    return image_folder_bundle(cfg, root_dir(cfg, LAYOUT), expect_classes=NUM_CLASSES)
