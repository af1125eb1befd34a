"""`release_compiled_if_crowded`: a long process sheds its compiled programs before it runs out
of memory mappings (multimodal_dln._cache)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln
from multimodal_dln import _cache


@pytest.mark.skipif(_cache._map_count_and_limit() is None, reason="needs Linux /proc")
def test_release_drops_mappings_only_past_the_threshold():
    fns = [jax.jit(lambda x, i=i: jnp.sin(x) * i) for i in range(40)]
    for i, f in enumerate(fns):  # 40 small programs: ~6 mappings each on XLA:CPU
        f(jnp.ones(i + 1)).block_until_ready()
    before, limit = _cache._map_count_and_limit()
    assert not mdln.release_compiled_if_crowded(fraction=1.0)  # under the cap: kept
    assert _cache._map_count_and_limit()[0] >= before - 5
    assert mdln.release_compiled_if_crowded(fraction=(before - 100) / limit)
    after = _cache._map_count_and_limit()[0]
    assert after < before - 100, (before, after)  # the 40 programs' code is unmapped
    np.testing.assert_allclose(fns[3](jnp.ones(4)), 3 * np.sin(1.0) * np.ones(4))  # recompiles
