"""KFP component: merge the embed shards into one embeddings artifact (the fan-in of sharded embedding)."""

from typing import List  # noqa: UP035  (kfp reads the annotation; it needs typing.List)

from kfp import dsl

from kurate.deploy.images import image_for
from kurate.io.artifacts import EmbeddingsArtifact


@dsl.component(base_image=image_for("base"), install_kfp_package=False)
def merge(
    # system.Dataset like EmbeddingsArtifact: kfp 2.17 cannot import a custom class inside List[...]
    shards: dsl.Input[List[dsl.Dataset]],  # noqa: UP006
    embeddings: dsl.Output[EmbeddingsArtifact],
):
    """Concatenate the shards in shard order; refuses a missing, repeated or foreign shard."""
    from kurate.io.sharding import merge_embeddings

    merge_embeddings([s.path for s in shards], embeddings.path)
