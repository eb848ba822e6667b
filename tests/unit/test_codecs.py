import numpy as np
import pytest

from feature_store import codecs
from feature_store.keys import Keys
from shared.errors import StoreError


def test_user_record_round_trip_drops_padding_and_keeps_order() -> None:
    vec = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    raw = codecs.encode_user(vec, np.array([7, 2, 9, -1, -1], dtype=np.int32))
    assert len(raw) == 5 + 4 * 3 + 4 * 3
    rec = codecs.decode_user(raw)
    np.testing.assert_array_equal(rec.vector, vec)
    assert rec.candidates.tolist() == [7, 2, 9]


def test_user_record_is_little_endian_on_the_wire() -> None:
    raw = codecs.encode_user(np.array([1.0], dtype=np.float32), np.array([1], dtype=np.int32))
    assert raw == b"\x01\x01\x00\x01\x00" + b"\x00\x00\x80\x3f" + b"\x01\x00\x00\x00"


def test_truncated_user_record_is_rejected() -> None:
    raw = codecs.encode_user(np.ones(4, dtype=np.float32), np.arange(3, dtype=np.int32))
    with pytest.raises(StoreError, match="corrupt"):
        codecs.decode_user(raw[:-2])


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
