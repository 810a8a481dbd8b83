"""Heavy models loaded once per process and shared, with the reason of the last failed load kept for display."""

from __future__ import annotations

import threading
from typing import Callable, Generic, Hashable, TypeVar

from .errors import MMError

T = TypeVar("T")


class LoadedOnce(Generic[T]):
    """Models by key: each loaded on first use and shared after. A failed load is not remembered as a model
    (the next use tries again: the model may have been provided meanwhile), only as the reason, until a load
    of that key succeeds."""

    def __init__(self) -> None:
        self._models: dict[Hashable, T] = {}
        self._failures: dict[Hashable, str] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The model for `key`, calling `load()` the first time. Raises what `load` raises."""
        with self._lock:
            if key not in self._models:
                try:
                    self._models[key] = load()
                except MMError as e:
                    self._failures[key] = str(e)
                    raise
                self._failures.pop(key, None)
            return self._models[key]

    def is_loaded(self, key: Hashable) -> bool:
        return key in self._models

    def failure(self, key: Hashable) -> str | None:
        """Why the last load of `key` failed, or None (loaded, or never tried)."""
        return self._failures.get(key)
