"""Cache keys: every cached result is stored beside the SHA-256 of what it was computed from
(config sections, sampler, parameter digests) written as JSON, and reused only when it matches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["digest"]


def digest(value: Any) -> str:
    """SHA-256 (64 hex digits) of `value` as JSON with sorted keys; a leaf JSON cannot write is
    written as its `str` (tuples and lists write alike)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
