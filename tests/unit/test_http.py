"""Shared HTTP helpers: keyset cursors and the field error."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from shared.http import decode_cursor, encode_cursor, invalid


@pytest.mark.parametrize("key", [0.0, -3.5, 1.7e9, float("inf")])
def test_a_cursor_round_trips_its_key_and_id(key: float) -> None:
    assert decode_cursor(encode_cursor(key, "c-1")) == (key, "c-1")


@pytest.mark.parametrize("cursor", ["not base64!", "bnVsbA==", "WzEsMiwzXQ=="])
def test_a_foreign_cursor_is_a_422_naming_the_parameter(cursor: str) -> None:
    with pytest.raises(HTTPException) as caught:
        decode_cursor(cursor)
    assert caught.value.status_code == 422
    assert caught.value.detail["errors"][0]["field"] == "query.cursor"


def test_no_cursor_means_the_first_page() -> None:
    assert decode_cursor(None) is None
    assert invalid("query.x", "why").status_code == 422
