from .base import Backend, Capabilities, Completion, Done, SamplingParams, TokenEvent
from .registry import get_backend, list_models, register, split_ref

__all__ = ["Backend", "Capabilities", "Completion", "Done", "SamplingParams", "TokenEvent", "get_backend",
           "list_models", "register", "split_ref"]
