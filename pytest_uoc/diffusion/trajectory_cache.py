"""Old import path: the trajectory cache lives in the cache layer (``pytest_uoc.stores``)."""
from ..stores import TrajectoryCache, fingerprint_module, stable_config  # noqa: F401
from .store import restore_scheduler, scheduler_state  # noqa: F401
