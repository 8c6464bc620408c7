"""KFP component: the shard numbers that sharded embedding fans out over (``dsl.ParallelFor``)."""

from typing import List  # noqa: UP035  (kfp reads the annotation; it needs typing.List)

from kfp import dsl

from kurate.deploy.images import image_for


@dsl.component(base_image=image_for("base"), install_kfp_package=False)
def shards(count: int) -> List[int]:  # noqa: UP006
    """``[0, 1, ..., count-1]``; a bad count fails here, before any embed pod starts."""
    from kurate.io.sharding import shard_indices

    return shard_indices(count)
