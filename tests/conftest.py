import glob
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def sample_images():
    images = sorted(glob.glob(os.path.join(ROOT, "samples", "*.jpg")))
    assert images, "samples/ has no images"
    return images
