"""The backend registry: `BACKENDS` (name -> Backend, in registration order), `register_backend`, `get_backend`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List

from ..errors import UnsupportedError

if TYPE_CHECKING:  # pragma: no cover
    from .protocol import Backend

BACKENDS: Dict[str, "Backend"] = {}


def register_backend(backend: "Backend") -> "Backend":
    """Add a backend under its `name` (replacing one of that name); returns it."""
    BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str) -> "Backend":
    """The backend called `name`; an unknown name raises UnsupportedError listing the available ones."""
    backend = BACKENDS.get(name) if isinstance(name, str) else None
    if backend is None:
        raise UnsupportedError(f"unknown backend {name!r}; available backends: {', '.join(BACKENDS)}")
    return backend


def training_backend_names() -> List[str]:
    """Names of the backends that train (`Backend.trains`), in registration order."""
    return [name for name, backend in BACKENDS.items() if backend.trains]
