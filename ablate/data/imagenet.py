"""ImageNet-1K (ILSVRC-2012) in the standard class-folder layout, read by the shared class-folder loader with the
paper's transforms: ``ROOT/train/n01440764/n01440764_10026.JPEG``, ``ROOT/val/n01440764/ILSVRC2012_val_00000293.JPEG``.

The val/ of the official tarball is flat (50,000 files, labels in the devkit); sort it into the 1,000 wnid folders
first, as timm and torchvision expect. A train/ without exactly 1,000 class folders (a partial copy) is an error;
use ``data=folder`` for subsets.
"""

from ablate.data import DATASETS, TRAIN_IMAGES, DataBundle
from ablate.data.folder import image_folder_bundle, root_dir, tree_train_images
from ablate.specs import RunSpec

NUM_CLASSES = 1000
LAYOUT = "an ImageNet-1K folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into class folders)"


TRAIN_IMAGES.register("imagenet")(tree_train_images)


@DATASETS.register("imagenet")
def imagenet(cfg: RunSpec) -> DataBundle:
    return image_folder_bundle(cfg, root_dir(cfg, LAYOUT), expect_classes=NUM_CLASSES)
