"""Byte encodings of stored values. Everything numeric is little-endian and explicit.

User record (``p:v:ver:u:<user_id>``), 5-byte header then two arrays::

    u8  format (=1) | u16 f (factors) | u16 n (candidates)
    float32[f] user vector | int32[n] candidate item indices, best first (no padding stored)

At f=64, n=100 a user costs 661 bytes; scores are not stored because the API recomputes them from
the vector and the in-memory item factors (a 100 x 64 dot product is cheaper than the bytes).

Session event (``p:sess:<id>`` list element): compact JSON ``{"i": item_id, "t": event_type, "ts": epoch_s,
"e": event_id}``. Items catalogue: JSON ``{"item_id": [...], "category": [...], "title": [...],
"available": [...]}`` (columnar, one value per item index).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from shared.errors import StoreError

_USER_HEADER = struct.Struct("<BHH")
_USER_FORMAT = 1


@dataclass(frozen=True)
class UserRecord:
    vector: np.ndarray  # float32 (f,)
    candidates: np.ndarray  # int32 (n,)


def encode_user(vector: np.ndarray, candidates: np.ndarray) -> bytes:
    """Pack a user vector (f,) and candidate indices (n,); -1 padding in ``candidates`` is dropped."""
    cands = np.asarray(candidates, dtype="<i4")
    cands = cands[cands >= 0]
    vec = np.asarray(vector, dtype="<f4")
    return _USER_HEADER.pack(_USER_FORMAT, vec.shape[0], cands.shape[0]) + vec.tobytes() + cands.tobytes()


def decode_user(raw: bytes) -> UserRecord:
    fmt, f, n = _USER_HEADER.unpack_from(raw)
    if fmt != _USER_FORMAT or len(raw) != _USER_HEADER.size + 4 * (f + n):
        raise StoreError(f"corrupt user record (format {fmt}, {len(raw)} bytes for f={f}, n={n})")
    vec = np.frombuffer(raw, dtype="<f4", count=f, offset=_USER_HEADER.size)
    cands = np.frombuffer(raw, dtype="<i4", count=n, offset=_USER_HEADER.size + 4 * f)
    return UserRecord(vector=vec, candidates=cands)


def encode_array(arr: np.ndarray, dtype: str) -> bytes:
    """Row-major little-endian bytes of ``arr`` cast to ``dtype`` ('<f4', '<f2', '<i4')."""
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def decode_array(raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=dtype)
    expected = int(np.prod(shape))
    if arr.size != expected:
        raise StoreError(f"array has {arr.size} values, expected {expected} for shape {shape}")
    return arr.reshape(shape)


def encode_json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def decode_json(raw: bytes) -> object:
    return json.loads(raw)
