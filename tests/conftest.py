import os
import sys

import pytest

from ssdconv import shipped

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def sample_images():
    images = [str(p) for p in shipped.photos()]
    assert images, f"{shipped.SAMPLES_DIR} has no images"
    return images
