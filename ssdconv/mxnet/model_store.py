"""GluonCV's model store, read only: where `get_model(NAME, pretrained=True)` left its weights.

A GluonCV user who once ran a zoo model with `pretrained=True` has its weights on disk already, as
`NAME-SHORTHASH.params` under `$MXNET_HOME/models` (or `~/.mxnet/models`). ssdconv looks there
the way GluonCV's own `model_store.get_model_file` does (same folder, same file name, same SHA-1
table and check) so a user need not know the file exists. Two differences, both on purpose:

* nothing is ever downloaded: a missing file is reported by the caller, which then asks for
  `--params` or `--seed`;
* a file that fails the checksum is refused (GluonCV would silently download it again). A
  partial download or a file the user replaced must not be converted as if it were GluonCV's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UserError
from ..family import zoo_family


def store_root() -> str:
    """The folder GluonCV keeps pretrained weights in: `$MXNET_HOME/models`, else
    `~/.mxnet/models` (the rule of `gluoncv.model_zoo.model_store.get_model_file`)."""
    if "MXNET_HOME" in os.environ:
        return os.path.join(os.environ["MXNET_HOME"], "models")
    return os.path.expanduser(os.path.join("~", ".mxnet", "models"))


def gluoncv_hashes() -> dict[str, str]:
    """GluonCV's table of store names to the full SHA-1 of their published weights."""
    from gluoncv.model_zoo.model_store import _model_sha1

    return dict(_model_sha1)


def store_name(zoo_name: str) -> str | None:
    """The name GluonCV stores a zoo model's weights under (its family knows: it need not be
    the zoo name), or None for a `_custom` model (its classes are the user's, so GluonCV
    publishes no weights for it)."""
    if zoo_name.endswith("_custom"):
        return None
    family = zoo_family(zoo_name)
    return zoo_name if family is None else family.store_name(zoo_name)


@dataclass(frozen=True)
class StoreEntry:
    """Where GluonCV would keep one model's weights, and the SHA-1 they must have."""

    name: str  # GluonCV's store name
    root: str
    sha1: str

    @property
    def file_name(self) -> str:
        """GluonCV's naming: NAME-SHORTHASH.params, the short hash being the SHA-1's first 8."""
        return f"{self.name}-{self.sha1[:8]}.params"

    @property
    def path(self) -> str:
        return os.path.join(self.root, self.file_name)


def store_entry(zoo_name: str, root: str | None = None,
                hashes: dict[str, str] | None = None) -> StoreEntry | None:
    """The store entry of a zoo model, or None when GluonCV publishes no weights for it.

    `root` defaults to `store_root()` and `hashes` to GluonCV's own table; passing them is for
    a store somewhere else (or weights registered by hand), not for skipping the check."""
    name = store_name(zoo_name)
    table = gluoncv_hashes() if hashes is None else hashes
    if name is None or name not in table:
        return None
    return StoreEntry(name=name, root=store_root() if root is None else root, sha1=table[name])


def sha1_matches(path: str, sha1: str) -> bool:
    """GluonCV's own check (`gluoncv.utils.check_sha1`) of a file against a hex SHA-1."""
    from gluoncv.utils import check_sha1

    return bool(check_sha1(path, sha1))


def verified_file(entry: StoreEntry) -> str | None:
    """The entry's file if it is there and passes GluonCV's checksum; None if it is absent.

    A file that is there but fails the checksum is a UserError: it is not GluonCV's file (a
    partial download, or replaced), and converting it would put the wrong weights under the
    zoo name."""
    if not os.path.isfile(entry.path):
        return None
    if not sha1_matches(entry.path, entry.sha1):
        raise UserError(f"{entry.path} fails GluonCV's SHA-1 checksum for {entry.name} (a partial "
                        "download or another file under its name); delete it and run GluonCV's "
                        f"get_model('{entry.name}', pretrained=True) again, or pass --params FILE")
    return entry.path
