from .queries import Tx
from .schema import SCHEMA_VERSION
from .store import Store, retrying

__all__ = ["Store", "Tx", "SCHEMA_VERSION", "retrying"]
