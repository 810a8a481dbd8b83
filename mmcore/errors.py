"""The few error types mmscope raises. Each message says what failed and what to do about it."""


class MMError(Exception):
    """Base of every error mmscope raises on purpose; pages and the CLI show its message as is."""


class MediaError(MMError):
    """A file could not be read: it names the file and the reason."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class ModelUnavailable(MMError):
    """A model checkpoint is neither in the local cache nor reachable, or could not be loaded."""


class SpaceMismatch(MMError):
    """Vectors or queries from one model were sent to a collection made by another."""


class StoreError(MMError):
    """The vector store refused an operation or could not be reached."""


class NotFound(MMError):
    """A collection or item that was asked for does not exist."""


class StoreLocked(StoreError):
    """Another process is writing the embedded store: it names that process and the ways out."""


class NewerDataDir(StoreError):
    """The data dir was written by a newer mmscope whose records this version can't read safely."""
