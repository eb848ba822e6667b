import numpy as np
import pytest

from feature_store import codecs, layout
from feature_store.base import UserRecord
from feature_store.keys import Keys
from shared.errors import StoreError
from tests.support import tiny

LAYOUT = layout.user_layout()


def test_user_record_round_trip_drops_padding_and_keeps_order() -> None:
    vec = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    raw = codecs.encode_user(UserRecord(vector=vec, candidates=np.array([7, 2, 9, -1, -1], dtype=np.int32)), LAYOUT)
    assert len(raw) == 1 + 2 * len(LAYOUT) + 4 * 3 + 4 * 3
    rec = codecs.decode_user(raw, LAYOUT)
    np.testing.assert_array_equal(rec.vector, vec)
    assert rec.candidates.tolist() == [7, 2, 9]


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
        codecs.decode_user(raw, [["no_such_array", "<f4"]] * len(LAYOUT))
