"""Shared fixtures. Every test runs offline: dummy cloud credentials, no metadata-server probes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

OFFLINE = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "true",
    "GOOGLE_CLOUD_PROJECT": "kurate-test",
    "HF_HUB_OFFLINE": "1",
    # A bucket URI in a test that did not start a server goes to a closed local port, never to a
    # cloud; the storage fixtures point these at moto / the GCS emulator for their own tests.
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
}
os.environ.update(OFFLINE)


@pytest.fixture
def image_folder(tmp_path: Path):
    """A factory for small folders of generated photos, duplicates and corrupt files."""
    from tests.helpers import make_image_folder

    def make(**kwargs):
        return make_image_folder(tmp_path / kwargs.pop("name", "input"), **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory) -> Path:
    """A kurate detector checkpoint: ``fcos_tiny`` trained here on generated shapes (seconds on a CPU)."""
    from kurate.models.detection import save_detector
    from tests.detector_helpers import CATEGORIES, train_tiny_detector

    path = tmp_path_factory.mktemp("detector") / "shapes-fcos-tiny.pt"
    save_detector(str(path), train_tiny_detector(n_images=160, epochs=10), "fcos_tiny", CATEGORIES)
    return path


# Real S3 (moto server) and GCS (emulator) endpoints on 127.0.0.1, and the fault-injecting proxy.
from tests.storage_servers import gcs, gcs_server, moto_auth, s3, s3_server  # noqa: E402, F401
