"""KFP artifact classes of kurate's typed inputs and outputs.

They live in the library (not in a component file) so that kfp.local and every phase image can
import them. Their ``schema_title`` stays a standard one (``system.Dataset``; ``system.Model`` for the
trained model): KFP only accepts the ``system``/``google`` namespaces, and Vertex AI knows only its
registered system schemas. The folder layouts are documented in :mod:`kurate.io.filelist`,
:mod:`kurate.io.embeddings_io` and :mod:`kurate.models.model_io`.
"""

from __future__ import annotations

from kfp import dsl


class FileListArtifact(dsl.Dataset):
    """A file list: ``meta.json`` + ``files.csv`` (names relative to the input root, which it records)."""


class EmbeddingsArtifact(dsl.Dataset):
    """Embeddings: ``embeddings.npy`` (float32 N x d) + ``filenames.csv`` + ``meta.json``."""


class ModelArtifact(dsl.Model):
    """The train phase's model: ``meta.json`` (``trained`` true/false) + ``model.ckpt`` when trained."""


class PredictionsArtifact(dsl.Dataset):
    """Object predictions: ``meta.json`` + ``predictions.jsonl`` (+ ``debug/``); see kurate.io.predictions."""
