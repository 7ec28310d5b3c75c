"""loomwork: a workbench for growing, curating and measuring trees of language-model continuations.

    import loomwork
    store = loomwork.Store.open()                      # SQLite in the user data dir, or a URL
    tree, root = loomwork.new_tree(store, "The lighthouse keeper")
    kids = await loomwork.expand(store, root.id, loomwork.get_backend("mock"), loomwork.SamplingParams(n=4))

Importing loomwork never imports torch; the hf backend loads it when a model is first used.
"""

from .backends import Backend, Capabilities, SamplingParams, get_backend, list_models
from .errors import BackendError, InvalidInput, LoomworkError, NotFound, StoreError, Unsupported
from .expansion import expand, expand_stream
from .ops import (
    add_child,
    delete_subtree,
    delete_tree,
    edit,
    merge,
    move,
    new_tree,
    set_archived,
    set_bookmark,
    split,
    tag,
    untag,
)
from .store import Store
from .tree import Generation, Node, Token, Tree, path_text

__version__ = "0.1.0"

__all__ = [
    "Backend", "BackendError", "Capabilities", "Generation", "InvalidInput", "LoomworkError", "Node", "NotFound",
    "SamplingParams", "Store", "StoreError", "Token", "Tree", "Unsupported", "add_child", "delete_subtree",
    "delete_tree", "edit", "expand", "expand_stream", "get_backend", "list_models", "merge", "move", "new_tree",
    "path_text", "set_archived", "set_bookmark", "split", "tag", "untag",
]
