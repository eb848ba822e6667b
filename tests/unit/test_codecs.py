import dataclasses

import numpy as np
import pytest

from feature_store import codecs, layout
from feature_store.base import UserRecord
from feature_store.keys import Keys
from shared.errors import StoreError
from tests.support import tiny

LAYOUT = layout.user_layout(6)


def test_user_record_round_trip_drops_padding_and_keeps_order() -> None:
    vec = np.array([0.5, -1.25, 3.0], dtype=np.float32)  # exact in float16
    raw = codecs.encode_user(UserRecord(vector=vec, candidates=np.array([7, 2, 9, -1, -1], dtype=np.int32)), LAYOUT)
    assert len(raw) == 1 + 2 * len(LAYOUT) + 2 * 3 + 2 * 3  # float16 vector, uint16 indices
    rec = codecs.decode_user(raw, LAYOUT)
    np.testing.assert_array_equal(rec.vector, vec)
    assert rec.candidates.tolist() == [7, 2, 9] and rec.candidates.dtype == np.int32


def test_index_arrays_are_uint16_only_while_every_item_index_fits() -> None:
    compact, wide = dict(layout.user_layout(2**16)), dict(layout.user_layout(2**16 + 1))
    assert compact["candidates"] == compact["seen"] == "<u2" and compact["vector"] == "<f2"
    assert wide["candidates"] == wide["seen"] == "<i4"
    big = np.array([70_000, 3], dtype=np.int32)
    raw = codecs.encode_user(UserRecord(vector=np.ones(1, np.float32), candidates=big), layout.user_layout(80_000))
    assert codecs.decode_user(raw, layout.user_layout(80_000)).candidates.tolist() == [70_000, 3]


def test_a_float16_vector_keeps_about_three_significant_digits() -> None:
    vec = np.random.default_rng(0).normal(0, 0.5, 64).astype(np.float32)
    got = codecs.decode_user(codecs.encode_user(UserRecord(vector=vec), LAYOUT), LAYOUT).vector
    assert got.dtype == np.float32 and not np.array_equal(got, vec)
    np.testing.assert_allclose(got, vec, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("n_items", [6, 2**17])
def test_publishing_encodes_every_user_as_encode_user_does(n_items: int) -> None:
    """``encode_users`` (vectorised, what publish writes) gives each user the bytes of ``encode_user``:
    padding dropped from dense and ragged index arrays, empty rows, any slice of users."""
    rng = np.random.default_rng(5)
    n = 9
    candidates = rng.integers(0, 6, (n, 4), dtype=np.int32)
    candidates[2, 2:] = -1
    candidates[5, :] = -1
    lengths = np.array([0, 3, 1, 0, 2, 5, 0, 1, 2])
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    seen_values = rng.integers(0, 6, indptr[-1], dtype=np.int32)
    seen_values[4] = -1
    data = dataclasses.replace(
        tiny.version_data("v"),
        user_ids=[f"u{i}" for i in range(n)],
        user_arrays={
            "vector": rng.normal(size=(n, 2)).astype(np.float32),
            "candidates": candidates,
            "seen": layout.Ragged(indptr, seen_values),
        },
    )
    wire = layout.user_layout(n_items)
    expected = [codecs.encode_user(data.user_record(i), wire) for i in range(n)]
    assert codecs.encode_users(data, wire, range(n)) == expected
    assert codecs.encode_users(data, wire, range(3, 8)) == expected[3:8]
    assert codecs.decode_user(expected[5], wire).candidates.size == 0


def test_user_record_is_little_endian_on_the_wire() -> None:
    record = UserRecord(vector=np.array([1.0], dtype=np.float32), candidates=np.array([1], dtype=np.int32))
    raw = codecs.encode_user(record, layout.LEGACY_USER_LAYOUT)
    assert raw == b"\x01\x01\x00\x01\x00" + b"\x00\x00\x80\x3f" + b"\x01\x00\x00\x00"


def test_a_version_without_a_recorded_layout_reads_the_legacy_records() -> None:
    """Records published before the layout went into the meta decode as they always did."""
    legacy = b"\x01\x01\x00\x01\x00" + b"\x00\x00\x80\x3f" + b"\x01\x00\x00\x00"
    rec = codecs.decode_user(legacy, codecs.user_layout_of({}))
    assert rec.vector.tolist() == [1.0] and rec.candidates.tolist() == [1]


def test_truncated_user_record_is_rejected() -> None:
    raw = codecs.encode_user(UserRecord(vector=np.ones(4, dtype=np.float32), candidates=np.arange(3)), LAYOUT)
    with pytest.raises(StoreError, match="corrupt"):
        codecs.decode_user(raw[:-2], LAYOUT)
    with pytest.raises(StoreError, match="corrupt"):
        codecs.decode_user(raw[:2], LAYOUT)


def test_every_declared_item_array_round_trips_in_its_wire_dtype() -> None:
    data = tiny.version_data()
    bundle, users = codecs.round_trip(data)
    for spec in layout.ITEM_ARRAYS:
        got = getattr(bundle, spec.name)
        assert got.dtype == np.dtype(spec.memory)
        np.testing.assert_array_equal(got, data.item_arrays[spec.name].astype(spec.wire).astype(spec.memory))
    assert users["u1"].candidates.tolist() == [0, 1, 2, 5]


def test_array_shape_is_checked() -> None:
    raw = codecs.encode_array(np.arange(6).reshape(2, 3), "<i4")
    assert codecs.decode_array(raw, "<i4", (3, 2)).tolist() == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(StoreError):
        codecs.decode_array(raw, "<i4", (4, 2))


def test_keys_are_namespaced_by_prefix_and_version() -> None:
    k = Keys("hr")
    assert k.user("2026-01-01.abcdef0123", "u1") == "hr:v:2026-01-01.abcdef0123:u:u1"
    assert k.user_pattern("2026-01-01.abcdef0123") == "hr:v:2026-01-01.abcdef0123:u:*"
    assert k.current == "hr:current"
    assert k.session("s1") == "hr:sess:s1"


def _stored(data):
    return (
        codecs.encode_catalogue(data.catalogue),
        codecs.encode_item_arrays(data),
        {cat: codecs.encode_popular(idx) for cat, idx in data.popular.items()},
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta, cat, arrays, pop: (meta, b"{not json", arrays, pop), "catalogue of version v is not valid JSON"),
        (lambda meta, cat, arrays, pop: (meta, b"[1, 2]", arrays, pop), "column 'item_id' has nothing"),
        (lambda meta, cat, arrays, pop: (meta, cat.replace(b'"a0",', b""), arrays, pop), "'item_id' has 5 values"),
        (lambda meta, cat, arrays, pop: ({**meta, "n_items": None}, cat, arrays, pop), "no valid n_items"),
        (lambda meta, cat, arrays, pop: ({**meta, "n_factors": "x"}, cat, arrays, pop), "no valid 'n_factors'"),
        (lambda meta, cat, arrays, pop: (meta, cat, arrays, {**pop, "A": b"\x01\x00"}), "popular list 'A'"),
        (lambda meta, cat, arrays, pop: (meta, cat, arrays, {**pop, "A": b"\x07\x00\x00\x00"}), "index outside 0..5"),
    ],
)
def test_a_corrupt_stored_version_is_a_store_error(change, message: str) -> None:
    """Whatever is wrong with the stored bytes, loading raises StoreError (never TypeError or KeyError), so
    callers that degrade on store errors handle it."""
    data = tiny.version_data("v")
    meta, catalogue, arrays, popular = change(dict(data.meta), *_stored(data))
    with pytest.raises(StoreError, match=message.replace("(", r"\(")):
        codecs.decode_item_bundle("v", meta, catalogue, arrays, popular)


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"i": "a0"}', b'{"i": "a0", "t": "view", "ts": "x", "e": "e"}'])
def test_a_corrupt_session_event_is_a_store_error(raw: bytes) -> None:
    with pytest.raises(StoreError, match="session s1"):
        codecs.decode_session_event(raw, "s1")


def test_a_corrupt_user_layout_is_a_store_error() -> None:
    raw = codecs.encode_user(UserRecord(vector=np.ones(2, dtype=np.float32)), LAYOUT)
    with pytest.raises(StoreError, match="corrupt user record or layout"):
        codecs.decode_user(raw, [["no_such_array", wire] for _, wire in LAYOUT])
