"""Exceptions raised for the library's error statuses. Each carries the library's own message
(which names the file, tensor or argument at fault) and its status name; each also derives from
the built-in exception a Python user would expect to catch (``ValueError`` for bad data,
``OSError`` for I/O, ...)."""

from __future__ import annotations


class FactortopyError(Exception):
    """Base class of every error the library reports. ``status`` is the C status name
    (``"FT_ERR_SHAPE"``, ...)."""

    status: str = "FT_ERR"

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class NullArgumentError(FactortopyError, ValueError):
    status = "FT_ERR_NULL"


class InvalidArgumentError(FactortopyError, ValueError):
    status = "FT_ERR_INVALID_ARGUMENT"


class ShapeError(FactortopyError, ValueError):
    status = "FT_ERR_SHAPE"


class DtypeError(FactortopyError, TypeError):
    status = "FT_ERR_DTYPE"


class DeviceError(FactortopyError, ValueError):
    status = "FT_ERR_DEVICE"


class DataError(FactortopyError, ValueError):
    status = "FT_ERR_DATA"


class FactortopyIOError(FactortopyError, OSError):
    status = "FT_ERR_IO"


class MismatchError(FactortopyError, ValueError):
    status = "FT_ERR_MISMATCH"


class NumericError(FactortopyError, ArithmeticError):
    status = "FT_ERR_NUMERIC"


class BackendError(FactortopyError, RuntimeError):
    status = "FT_ERR_BACKEND"


class InternalError(FactortopyError, RuntimeError):
    """A panic inside the library, caught at the C boundary (a bug: please report it)."""

    status = "FT_ERR_PANIC"


class FactortopyMemoryError(FactortopyError, MemoryError):
    """An allocation sized by the input failed; the library and the process stay usable."""

    status = "FT_ERR_MEMORY"


class BusyError(FactortopyError, RuntimeError):
    """The handle is in use by a call on another thread that must not overlap with this one;
    nothing was done. The package's objects serialise the calls that change a handle (every
    monitor call, adding a layer), so this is seen when a layer is added to a feature set that
    another thread is reading, or when a handle is shared with other code."""

    status = "FT_ERR_BUSY"


_BY_STATUS = {
    1: NullArgumentError,
    2: InvalidArgumentError,
    3: ShapeError,
    4: DtypeError,
    5: DeviceError,
    6: DataError,
    7: FactortopyIOError,
    8: MismatchError,
    9: NumericError,
    10: BackendError,
    11: InternalError,
    12: FactortopyMemoryError,
    13: BusyError,
}


def error_for_status(status: int, name: str, message: str) -> FactortopyError:
    cls = _BY_STATUS.get(status, FactortopyError)
    return cls(message, name)
