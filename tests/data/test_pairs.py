"""Positive pairs across images: codes per patient, and a seeded partner of the same patient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medcontrast.data.pairs import check_partners, codes_and_members, partner_index
from medcontrast.errors import MedContrastError


def test_codes_and_members_lists_the_members_of_each_patient():
    codes, members = codes_and_members(pd.Series(["p1", "p2", "p1", "p3", "p1"]))
    assert codes.tolist() == [0, 1, 0, 2, 0]
    assert [m.tolist() for m in members] == [[0, 2, 4], [1], [3]]


def test_a_partner_is_another_image_of_the_same_patient_drawn_by_the_seed():
    codes, members = codes_and_members(pd.Series(["p1", "p2", "p1", "p3", "p1"]))
    partners = {partner_index(0, members, codes, seed) for seed in range(50)}
    assert partners == {2, 4}  # never itself while others exist, both drawn over seeds
    assert partner_index(0, members, codes, 5) == partner_index(0, members, codes, 5)
    assert partner_index(1, members, codes, 5) == 1  # alone: pairs with itself
    assert partner_index(3, None, None, 5) == 3  # pairing off


def test_no_patient_with_two_images_is_an_error_naming_the_setting(capsys):
    _, alone = codes_and_members(pd.Series(["a", "b", "c"]))
    with pytest.raises(MedContrastError, match=r"pairs\.positives=patient, but no patient"):
        check_partners(alone, 3, "patient", say=True)
    _, some = codes_and_members(pd.Series(["a", "a", "c"]))
    check_partners(some, 3, "patient", say=True)
    assert "2 of 3 images have another image" in capsys.readouterr().err
    assert np.array_equal(codes_and_members(pd.Series(["x"]))[0], [0])
