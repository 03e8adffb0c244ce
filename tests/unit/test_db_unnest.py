"""shared.db's unnest helpers: the statements and parameters the stores' bulk writes send."""

from __future__ import annotations

import pytest

from shared.db import as_columns, insert_unnest, unnest


def test_unnest_numbers_the_parameters_from_first() -> None:
    assert unnest("text", "int") == "unnest($1::text[], $2::int[])"
    assert unnest("text", "timestamptz", first=4) == "unnest($4::text[], $5::timestamptz[])"


def test_insert_unnest_names_the_columns_in_parameter_order() -> None:
    assert insert_unnest("t", "a text", "b numeric") == (
        "INSERT INTO t (a, b) SELECT * FROM unnest($1::text[], $2::numeric[])"
        " ON CONFLICT DO NOTHING"
    )
    assert insert_unnest("t", "a text", then="RETURNING a") == (
        "INSERT INTO t (a) SELECT * FROM unnest($1::text[]) RETURNING a"
    )


def test_as_columns_transposes_rows() -> None:
    assert as_columns([("a", 1), ("b", 2)], 2) == [["a", "b"], [1, 2]]
    assert as_columns([], 3) == [[], [], []]
    with pytest.raises(ValueError, match="3 values for 2 columns"):
        as_columns([("a", 1, 2)], 2)
    with pytest.raises(ValueError, match="shorter"):
        as_columns([("a", 1), ("b",)], 2)  # rows of unequal length
