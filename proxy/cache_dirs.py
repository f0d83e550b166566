"""Re-export of :mod:`proxy.core.cache_dirs` (its home is the core layer, so that ``filters/``
can build cache entries too)."""

from __future__ import annotations

from proxy.core.cache_dirs import COMPLETE_MARKER, build_cached_dir, is_complete

__all__ = ["COMPLETE_MARKER", "build_cached_dir", "is_complete"]
