"""A real, trained demo detector for ssdconv.

Seeded weights prove that the conversion arithmetic is exact, but they detect nothing: a
converted model's accuracy can only be shown with a model that was trained. This subpackage
holds a synthetic shapes detection dataset (`shapes_dataset`, numpy and OpenCV only), the
small MobileNetV2 SSD trained on it (`model`) and the Gluon glue used by `train/` (`gluon_data`,
`evaluate`). The trained model lives in `samples/demo/`.
"""

from .shapes_dataset import CLASSES, IMAGE_SIZE, SPLITS, make_sample

__all__ = ["CLASSES", "IMAGE_SIZE", "SPLITS", "make_sample"]
