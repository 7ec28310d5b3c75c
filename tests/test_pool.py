"""Model pools: the process's loaded models shared by every pool, each pool deciding by its owner's policy who
may use which model, and the capabilities that load models by name asking the pool they are given."""

import pytest

from loomwork import ops
from loomwork.backends import SamplingParams, get_backend
from loomwork.backends.pool import PROCESS
from loomwork.errors import InvalidInput, NotFound
from loomwork.graders import registry
from loomwork.graders.bon import best_of_n


def only(who: str):
    def policy(ref: str, principal) -> str:
        if principal != who:
            raise InvalidInput(f"{principal} may not use {ref}")
        return ref
    return policy


def test_pools_share_what_is_loaded_and_decide_who_may_use_it():
    pool = PROCESS.with_policy(only("ann"), default="mock:default")
    assert pool.get(None, "ann") is get_backend("mock:default") is PROCESS.get("mock")  # loaded once, shared
    with pytest.raises(InvalidInput, match="bob may not use mock:default"):
        pool.get("mock:default", "bob")
    with pytest.raises(NotFound, match="unknown backend"):
        pool.get("nope:x", "ann")  # a bad reference is refused before any policy looks at it
    assert pool.allowed(None, "ann") == "mock:default"


async def test_a_judge_loads_its_model_through_the_pool_it_is_given(store):
    refuse_all = PROCESS.with_policy(only("nobody"))
    with pytest.raises(InvalidInput, match="may not use mock:default"):
        registry.create(store, "judge", "judge", model="mock:default", models=refuse_all)
    g = registry.create(store, "judge", "judge", model="mock:default")  # the process's own pool: no policy
    _t, root = ops.new_tree(store, "The river")
    with pytest.raises(InvalidInput, match="may not use mock:default"):
        await best_of_n(store, root.id, get_backend("mock"), SamplingParams(n=2, max_tokens=3), g, refuse_all)
    with store.read() as tx:
        assert tx.children(root.id) == []  # refused before anything was sampled


def test_a_provider_missing_what_it_needs_says_how_to_install_it():
    from loomwork.backends import registry
    from loomwork.backends.pool import Provider
    from loomwork.errors import BackendError

    registry.PROVIDERS["needy"] = Provider("needy", "no.such.module", "Nope", ("no_such_package_xyz",),
                                           "pip install no-such-package")
    try:
        with pytest.raises(BackendError, match="needy: models need no_such_package_xyz: pip install no-such-package"):
            get_backend("needy:x")
    finally:
        del registry.PROVIDERS["needy"]
    with pytest.raises(NotFound, match="known backends are mock, hf, openai, openai-chat, llama"):
        get_backend("needy:x")


def test_a_bad_default_model_names_the_variable_it_came_from(monkeypatch):
    from loomwork.backends.pool import PROCESS

    monkeypatch.setenv("LOOMWORK_MODEL", "hf-typo:gemma")
    with pytest.raises(NotFound, match="^LOOMWORK_MODEL: unknown backend"):
        PROCESS.get()
    with pytest.raises(NotFound, match="^unknown backend"):  # named by the caller: no variable to blame
        PROCESS.get("hf-typo:gemma")
