"""Baking pretrained weights into an image folder (the embed image's PRETRAINED_WEIGHTS build arg):
the file lands under the name the embed phase looks for, is verified by loading, and is then used."""

from __future__ import annotations

import pytest

from kurate.errors import ConfigError, KurateError
from kurate.models import embedding, weights


def test_zoo_key_settings():
    assert weights.model_settings("resnet-34/simclr/d16/w1.0") == {
        "model_name": "resnet-34",
        "num_ftrs": 16,
        "width": 1.0,
    }


def test_baked_file_is_found_and_used_by_embed(tmp_path, monkeypatch):
    # A stand-in for the downloaded zoo file: real weights of the right model (the build verifies by loading).
    model, _ = embedding.prepare_model("resnet-18", 1.0, 32, pre_trained=False, seed=7)
    source = tmp_path / "weights.ckpt"
    embedding.save_checkpoint(str(source), model)
    dest = tmp_path / "opt" / "weights"
    (baked,) = weights.bake([weights.DEFAULT_KEY], str(dest), from_file=str(source))
    assert baked.endswith(embedding.zoo_url(embedding.model_config()).rsplit("/", 1)[-1])
    assert [p.name for p in dest.iterdir()] == [baked.rsplit("/", 1)[-1]]  # no temp file left

    monkeypatch.setenv(embedding.WEIGHTS_DIR_ENV, str(dest))
    again, how = embedding.prepare_model("resnet-18", 1.0, 32, pre_trained=True, seed=1)
    assert how.startswith("lightly model zoo resnet-18/simclr/d32/w1.0")
    first = next(iter(model.state_dict()))
    assert (again.state_dict()[first] == model.state_dict()[first]).all()


def test_wrong_weights_fail_the_bake(tmp_path):
    model, _ = embedding.prepare_model("resnet-18", 1.0, 16, pre_trained=False)
    source = tmp_path / "d16.ckpt"
    embedding.save_checkpoint(str(source), model)
    with pytest.raises(KurateError, match="do not load"):
        weights.bake([weights.DEFAULT_KEY], str(tmp_path / "dest"), from_file=str(source))  # d32 expected
    assert not any((tmp_path / "dest").iterdir())


def test_unknown_key_lists_the_zoo(tmp_path):
    with pytest.raises(ConfigError, match="resnet-18/simclr/d32/w1.0"):
        weights.bake(["resnet-50/simclr/d32/w1.0"], str(tmp_path))
