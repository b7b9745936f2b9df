"""What the converted network expects of its input pixels.

network input = (pixel[channel_order] - mean) * scale, per channel, pixels in 0..255. Passes that
fold the source model's normalisation into the first conv (1/std, RGB->BGR) or absorb an input
affine layer (VGG's constant multiply, ResNet v2's data BatchNorm) update this record, and the
manifest publishes it, so the user's preprocessing stays exactly the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

# GluonCV's normalisation ((pixel - mean) / std, RGB, pixel units): the default source model's.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class Preprocess:
    channel_order: str  # "RGB" or "BGR": the order the network input expects
    mean: tuple[float, float, float]  # in channel_order, pixel units
    scale: tuple[float, float, float]  # in channel_order

    @classmethod
    def from_source(cls, mean_rgb: tuple[float, float, float], std_rgb: tuple[float, float, float],
                    order: str = "RGB") -> Preprocess:
        """The source model's own normalisation: (pixel - mean) / std in RGB order."""
        return cls(channel_order=order, mean=tuple(mean_rgb), scale=tuple(1.0 / s for s in std_rgb))

    def as_dict(self) -> dict:
        return {"channel_order": self.channel_order, "mean": [float(m) for m in self.mean],
                "scale": [float(s) for s in self.scale]}
