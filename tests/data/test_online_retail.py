"""The Online Retail layout's own rules (:mod:`recsys.data.online_retail`); its loads are
tested with every layout's in ``test_ingest.py``."""

from __future__ import annotations

from recsys.data.online_retail import derive_category, is_non_product_code


def test_non_product_rule_and_category() -> None:
    for code in [
        "POST",
        "D",
        "m",
        "DOT",
        "C2",
        "BANK CHARGES",
        "AMAZONFEE",
        "CRUK",
        "PADS",
        "gift_0001_20",
        "S",
        "B",
    ]:
        assert is_non_product_code(code), code
    for code in ["85123A", "22139", "DCGSSGIRL", "DCGS0003", "15056BL"]:
        assert not is_non_product_code(code), code
    assert derive_category("SET OF 3 CAKE TINS PANTRY DESIGN ") == "Design"
    assert derive_category("") == ""
