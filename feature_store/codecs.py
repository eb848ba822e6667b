"""Byte encodings of every stored value, and nothing else. Everything numeric is little-endian and explicit.

**User record** (``p:v:ver:u:<user_id>``): a header, then the user's arrays back to back::

    u8 format (=1) | u16 count per array of the version's user layout | each array's values (its wire dtype)

The layout is the version meta's ``user_record`` ([[name, wire dtype], ...], ``layout.user_layout``:
float16 vector, uint16 item indices for a version of at most 65,536 items, int32 above); versions
from before it was recorded use ``layout.LEGACY_USER_LAYOUT`` (vector float32, candidates int32),
whose records are byte-identical to this format. At f=64 and 100 candidates a record is 335 bytes
plus 2 per seen item (669 with float32 / int32); scores are not stored because the API recomputes
them from the vector and the in-memory item factors. ``encode_users`` encodes many at once, with
the same bytes.

**Item arrays** (``p:v:ver:<name>``): the row-major array in the wire dtype of its ``layout.ITEM_ARRAYS``
entry, shape (n_items,) or (n_items, meta[width]).

**Catalogue** (``p:v:ver:items``): JSON ``{"item_id": [...], "category": [...], "title": [...],
"available": [...]}``, columnar, one value per item index. **Popular list**: int32 item indices.

**Session event** (``p:sess:<id>`` list element), 14 bytes + the two ids::

    u8 format (=2) | u8 event type (index in shared.schemas.EVENT_TYPES) | f64 ts (unix s) |
    u16 len(item_id) | u16 len(event_id) | item_id UTF-8 | event_id UTF-8

(52 bytes for a 6-character item and a UUID, against 84 for the JSON ``{"i": item_id, "t": event_type,
"ts": epoch_s, "e": event_id}`` of format 1, which is still read: sessions live across a deploy.) **Stream event** (``p:events`` entry): fields event_id, user_id,
session_id, item_id, event_type (str, '' for a missing id), ts (repr of float unix seconds), weight
(repr of float, '' if none).
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from feature_store.base import (
    Catalogue,
    ItemBundle,
    RequestFeatures,
    SessionEvent,
    StoredRequest,
    UserRecord,
    VersionData,
)
from feature_store.layout import ITEM_ARRAYS, LEGACY_USER_LAYOUT, USER_ARRAY, Ragged
from shared.errors import StoreError
from shared.schemas import EVENT_TYPES

_USER_FORMAT = 1
UserLayout = Sequence[Sequence[str]]  # [[name, wire dtype], ...]


# --- arrays and JSON -------------------------------------------------------------------------------
def encode_array(arr: np.ndarray, dtype: str) -> bytes:
    """Row-major little-endian bytes of ``arr`` cast to ``dtype`` ('<f4', '<f2', '<i4', ...)."""
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def decode_array(raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=dtype)
    expected = int(np.prod(shape))
    if arr.size != expected:
        raise StoreError(f"array has {arr.size} values, expected {expected} for shape {shape}")
    return arr.reshape(shape)


def encode_json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def decode_json(raw: bytes | None, what: str = "value") -> object:
    """The JSON value of ``raw``; a missing (None) or unreadable value is a StoreError naming ``what``."""
    if raw is None:
        raise StoreError(f"{what} is missing")
    try:
        return json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{what} is not valid JSON ({exc})") from None


def _column(table: Any, name: str, n: int, what: str) -> list:
    column = table.get(name) if isinstance(table, dict) else None
    if not isinstance(column, list) or len(column) != n:
        got = f"{len(column)} values" if isinstance(column, list) else "nothing"
        raise StoreError(f"{what} is corrupt: column {name!r} has {got}, expected {n}")
    return column


# --- user record ----------------------------------------------------------------------------------
def decode_meta(raw: bytes, version: str) -> dict[str, Any]:
    meta = decode_json(raw, f"the meta of version {version}")
    if not isinstance(meta, dict):
        raise StoreError(f"the meta of version {version} is not a JSON object")
    return meta


def user_layout_of(meta: Mapping[str, Any]) -> UserLayout:
    """The user-record layout a version was published with (see the module docstring)."""
    return meta.get("user_record") or LEGACY_USER_LAYOUT


def encode_user(record: UserRecord, layout: UserLayout) -> bytes:
    """Pack one user's arrays in ``layout`` order; ``-1`` entries of index arrays are dropped."""
    parts = []
    counts = []
    for name, wire in layout:
        arr = np.asarray(record.arrays.get(name, ()), dtype=USER_ARRAY[name].memory)
        if USER_ARRAY[name].memory == "int32":
            arr = arr[arr >= 0]  # before the cast: -1 would wrap in an unsigned wire dtype
        arr = arr.astype(wire)
        parts.append(arr.tobytes())
        counts.append(arr.shape[0])
    return struct.pack(f"<B{len(layout)}H", _USER_FORMAT, *counts) + b"".join(parts)


def encode_users(data: VersionData, layout: UserLayout, rows: range) -> list[bytes]:
    """``encode_user`` of users ``rows`` of ``data``, the same bytes, vectorised per array: what
    publishing writes (a few us per user instead of ~15)."""
    n = len(rows)
    header = np.empty(n, dtype=np.dtype([("format", "u1"), ("counts", "<u2", (len(layout),))]))
    header["format"] = _USER_FORMAT
    buffers, offsets = [], []
    for a, (name, wire) in enumerate(layout):
        values, starts = _user_values(data.user_arrays.get(name), rows, name, wire)
        header["counts"][:, a] = np.diff(starts)
        buffers.append(values.tobytes())
        offsets.append((starts * np.dtype(wire).itemsize).tolist())
    heads, size = header.tobytes(), header.dtype.itemsize
    records = [heads[i : i + size] for i in range(0, n * size, size)]
    for buf, o in zip(buffers, offsets, strict=True):  # one pass per array: ~0.3 us per user each
        records = [r + buf[a:b] for r, a, b in zip(records, o, o[1:], strict=False)]  # o has n + 1
    return records


def _user_values(source: object, rows: range, name: str, wire: str) -> tuple[np.ndarray, np.ndarray]:
    """The values of users ``rows`` of one user array, back to back in ``wire`` dtype, and each user's
    start (int64 (len(rows) + 1,)); index arrays without their ``-1`` entries, as ``encode_user``."""
    index = USER_ARRAY[name].memory == "int32"
    if source is None:
        return np.empty(0, dtype=wire), np.zeros(len(rows) + 1, dtype=np.int64)
    if isinstance(source, Ragged):
        lo, hi = int(source.indptr[rows.start]), int(source.indptr[rows.stop])
        values, starts = source.values[lo:hi], source.indptr[rows.start : rows.stop + 1] - lo
        if index and (values < 0).any():
            keep = values >= 0
            starts = np.concatenate([[0], np.cumsum(keep)])[starts]
            values = values[keep]
    elif isinstance(source, np.ndarray) and source.ndim == 2:
        block = source[rows.start : rows.stop]
        keep = block >= 0 if index else np.ones(block.shape, dtype=bool)
        values = block[keep]
        starts = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    else:  # a sequence of per-user arrays
        per_user = [np.asarray(source[i]) for i in rows]  # type: ignore[index]
        per_user = [r[r >= 0] for r in per_user] if index else per_user
        values = np.concatenate(per_user) if per_user else np.empty(0)
        starts = np.concatenate([[0], np.cumsum([len(r) for r in per_user])])
    return np.ascontiguousarray(values, dtype=wire), starts.astype(np.int64)


def user_records_size(data: VersionData, layout: UserLayout) -> int:
    """Total bytes of ``data``'s encoded user records (what :func:`encode_user` makes for every user),
    from the arrays' shapes: no record is encoded. Index arrays count their non-negative entries only."""
    n = len(data.user_ids)
    total = n * struct.calcsize(f"<B{len(layout)}H")
    for name, wire in layout:
        rows = data.user_arrays.get(name)
        if rows is None:
            continue
        values = rows.values if isinstance(rows, Ragged) else rows
        if isinstance(values, np.ndarray) and values.dtype != object:
            count = int((values >= 0).sum()) if USER_ARRAY[name].memory == "int32" else int(values.size)
        else:  # a sequence of per-user arrays
            count = sum(int((np.asarray(r) >= 0).sum()) if USER_ARRAY[name].memory == "int32" else len(r) for r in rows)
        total += count * np.dtype(wire).itemsize
    return total


def decode_user(raw: bytes, layout: UserLayout) -> UserRecord:
    try:
        return _decode_user(raw, layout)
    except (KeyError, TypeError, ValueError, struct.error) as exc:  # a layout or record we cannot read
        raise StoreError(f"corrupt user record or layout ({exc!r})") from None


def _decode_user(raw: bytes, layout: UserLayout) -> UserRecord:
    header, arrays_of = _user_decoder(layout if isinstance(layout, tuple) else tuple(map(tuple, layout)))
    if len(raw) < header.size:
        raise StoreError(f"corrupt user record ({len(raw)} bytes, shorter than its {header.size}-byte header)")
    fmt, *counts = header.unpack_from(raw)
    if fmt != _USER_FORMAT or len(raw) != header.size + sum(
        n * size for (_, _, _, size), n in zip(arrays_of, counts, strict=True)
    ):
        raise StoreError(f"corrupt user record (format {fmt}, {len(raw)} bytes for counts {counts})")
    arrays, offset = {}, header.size
    for (name, wire, memory, size), n in zip(arrays_of, counts, strict=True):
        arrays[name] = np.frombuffer(raw, dtype=wire, count=n, offset=offset).astype(memory, copy=False)
        offset += n * size
    return UserRecord(**arrays)


@functools.lru_cache(maxsize=64)
def _user_decoder(
    layout: tuple[tuple[str, ...], ...],
) -> tuple[struct.Struct, list[tuple[str, np.dtype, np.dtype, int]]]:
    """The header and the (name, wire dtype, memory dtype, item size) of each array of a layout: worked out
    once per layout, not per record (a request decodes one record)."""
    arrays = []
    for name, wire in layout:
        wire_dtype = np.dtype(wire)
        arrays.append((name, wire_dtype, np.dtype(USER_ARRAY[name].memory), wire_dtype.itemsize))
    return struct.Struct(f"<B{len(layout)}H"), arrays


# --- item side of a version -----------------------------------------------------------------------
CATALOGUE_COLUMNS = ("item_id", "category", "title", "available")


def encode_catalogue(catalogue: Catalogue) -> bytes:
    return encode_json(
        {
            "item_id": [str(i) for i in catalogue.item_ids],
            "category": [str(c) for c in catalogue.categories],
            "title": [str(t) for t in catalogue.titles],
            "available": [bool(a) for a in catalogue.available],
        }
    )


def encode_item_arrays(data: VersionData) -> dict[str, bytes]:
    """name -> bytes of every item array of ``data`` (``layout.ITEM_ARRAYS``, wire dtypes)."""
    return {spec.name: encode_array(data.item_arrays[spec.name], spec.wire) for spec in ITEM_ARRAYS}


def encode_popular(idx: np.ndarray) -> bytes:
    return encode_array(idx, "<i4")


def decode_item_bundle(
    version: str,
    meta: dict[str, Any],
    catalogue_raw: bytes | None,
    arrays_raw: Mapping[str, bytes | None],
    popular_raw: Mapping[str, bytes],
) -> ItemBundle:
    """The ItemBundle of ``version`` from its stored bytes (one value per key; None = key missing).

    An item array the version's meta has no width for (``required=False`` arrays of versions that
    predate them) loads as (n_items, 0); any other missing or mis-sized value is a StoreError.
    """
    if catalogue_raw is None:
        raise StoreError(f"version {version} has no catalogue")
    items = decode_json(catalogue_raw, f"the catalogue of version {version}")
    try:
        n = int(meta["n_items"])
    except (KeyError, TypeError, ValueError):
        raise StoreError(f"version {version} meta has no valid n_items") from None
    what = f"the catalogue of version {version}"
    item_ids, categories, titles, available = (_column(items, c, n, what) for c in CATALOGUE_COLUMNS)
    arrays = {}
    for spec in ITEM_ARRAYS:
        raw = arrays_raw.get(spec.name)
        if spec.width is None:
            shape: tuple[int, ...] = (n,)
        elif spec.width in meta:
            try:
                shape = (n, int(meta[spec.width]))
            except (TypeError, ValueError):
                raise StoreError(f"version {version} meta has no valid {spec.width!r}") from None
        elif not spec.required:
            shape, raw = (n, 0), raw or b""
        else:
            raise StoreError(f"version {version} meta has no {spec.width!r} for {spec.name}")
        if raw is None:
            raise StoreError(f"version {version} has no {spec.name} array")
        arrays[spec.name] = decode_array(raw, spec.wire, shape).astype(spec.memory, copy=False)
    return ItemBundle(
        version=version,
        meta=meta,
        item_ids=[str(i) for i in item_ids],
        categories=np.array(categories, dtype=object),
        titles=[str(t) for t in titles],
        available=np.array(available, dtype=bool),
        arrays=arrays,
        popular={cat: decode_popular(raw, n, f"popular list {cat!r} of {version}") for cat, raw in popular_raw.items()},
    )


def decode_popular(raw: bytes | None, n_items: int, what: str) -> np.ndarray:
    """int32 item indices, each in [0, n_items); anything else is a StoreError."""
    if raw is None or len(raw) % 4:
        raise StoreError(f"{what} is corrupt ({'missing' if raw is None else f'{len(raw)} bytes'})")
    idx = np.frombuffer(raw, dtype="<i4").astype(np.int32)
    if idx.size and (idx.min() < 0 or idx.max() >= n_items):
        raise StoreError(f"{what} is corrupt: item index outside 0..{n_items - 1}")
    return idx


def round_trip(data: VersionData) -> tuple[ItemBundle, dict[str, UserRecord]]:
    """``data`` as the API reads it back from the store: every value encoded and decoded with the
    store's codecs (float16 scores included), without a store. What the lab's replay ranks with."""
    layout = user_layout_of(data.meta)
    bundle = decode_item_bundle(
        data.version,
        dict(data.meta),
        encode_catalogue(data.catalogue),
        encode_item_arrays(data),
        {cat: encode_popular(idx) for cat, idx in data.popular.items()},
    )
    users = {
        str(user): decode_user(encode_user(data.user_record(i), layout), layout) for i, user in enumerate(data.user_ids)
    }
    return bundle, users


# --- live events ----------------------------------------------------------------------------------
# Session event, format 2: a 14-byte header, then the two ids (UTF-8). The event type is its index in
# EVENT_TYPES, whose order therefore never changes (new types go at the end).
_SESSION_FORMAT = 2
_SESSION_HEADER = struct.Struct("<BBdHH")  # format, event type, ts, len(item_id), len(event_id)
_EVENT_CODE = {name: i for i, name in enumerate(EVENT_TYPES)}


def encode_session_event(ev: SessionEvent) -> bytes:
    item, eid = ev.item_id.encode(), ev.event_id.encode()
    return _SESSION_HEADER.pack(_SESSION_FORMAT, _EVENT_CODE[ev.event_type], ev.ts, len(item), len(eid)) + item + eid


def decode_session_event(raw: bytes, session_id: str | None) -> SessionEvent:
    """One session list element: format 2 (binary), or the JSON of sessions written before it
    (``{"i": item_id, "t": event_type, "ts": epoch_s, "e": event_id}``, alive until their TTL)."""
    try:
        if raw[:1] == b"{":
            return _legacy_session_event(raw, session_id)
        fmt, kind, ts, n_item, n_eid = _SESSION_HEADER.unpack_from(raw)
        end = _SESSION_HEADER.size + n_item
        if fmt != _SESSION_FORMAT or len(raw) != end + n_eid:
            raise ValueError(f"format {fmt}, {len(raw)} bytes for ids of {n_item} + {n_eid}")
        return SessionEvent(
            raw[_SESSION_HEADER.size : end].decode(), EVENT_TYPES[kind], ts, raw[end:].decode(), session_id=session_id
        )
    except (KeyError, TypeError, ValueError, IndexError, struct.error) as exc:
        raise StoreError(f"an event of session {session_id} is corrupt ({exc!r})") from None


def decode_request(stored: StoredRequest, layout: UserLayout, session_id: str | None) -> RequestFeatures:
    """The request features of what ``read_request`` read (StoreError if any of it is corrupt)."""
    return RequestFeatures(
        user=decode_user(stored.user, layout) if stored.user else None,
        session=[decode_session_event(raw, session_id) for raw in stored.session],
        session_seen=frozenset(s.decode() for s in stored.seen),
    )


def _legacy_session_event(raw: bytes, session_id: str | None) -> SessionEvent:
    d = json.loads(raw)
    return SessionEvent(
        item_id=str(d["i"]), event_type=str(d["t"]), ts=float(d["ts"]), event_id=str(d["e"]), session_id=session_id
    )


def encode_stream_event(ev: SessionEvent) -> dict[str, str]:
    return {
        "event_id": ev.event_id,
        "user_id": ev.user_id or "",
        "session_id": ev.session_id or "",
        "item_id": ev.item_id,
        "event_type": ev.event_type,
        "ts": repr(ev.ts),
        "weight": "" if ev.weight is None else repr(ev.weight),
    }


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def decode_stream_event(fields: Mapping[bytes, bytes] | None) -> SessionEvent:
    """One stream entry as a SessionEvent, leniently: a missing text field reads as "" (user_id and
    session_id as None), an unreadable ts or weight as NaN, and an entry deleted while pending has
    every field missing. Validating the values is the reader's job."""
    f = fields or {}

    def text(name: bytes) -> str:
        raw = f.get(name)
        return raw.decode("utf-8", "replace") if raw else ""

    weight = text(b"weight")
    return SessionEvent(
        item_id=text(b"item_id"),
        event_type=text(b"event_type"),
        ts=_float_or_nan(text(b"ts")),
        event_id=text(b"event_id"),
        user_id=text(b"user_id") or None,
        session_id=text(b"session_id") or None,
        weight=_float_or_nan(weight) if weight else None,
    )
