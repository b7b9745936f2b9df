"""The registered families: the detector families, tried in this order, then the fallback.

Each module defines `FAMILY`, a `ssdconv.family.interface.DetectorFamily`. A new family is a
folder of its own plus one line here (two when it has options of its own); nothing else in
ssdconv names a family.
"""

FAMILY_MODULES: tuple[str, ...] = (
    "ssdconv.yolo.family",  # first: SSD's exported-symbol sizing also reads 5-D slice_like
    "ssdconv.ssd.family",   # constants, which YOLOv3's grid offsets are too
    "ssdconv.retinaface.family",
)

# The family of every graph no detector family above recognises: a plain network, converted up to
# its own outputs (tried last, it recognises anything it can convert).
FALLBACK_MODULE: str | None = "ssdconv.plain.family"

# The modules declaring a family's own options, each `OPTIONS = (family name, (Option, ...))`:
# light modules, since the command line reads them at start-up (`ssdconv.options`).
FAMILY_OPTION_MODULES: tuple[str, ...] = (
    "ssdconv.yolo.options",
    "ssdconv.retinaface.options",
)
