"""File names that may identify someone become pseudonyms; the names machines give stay."""

from __future__ import annotations

import pytest

from medcontrast.data.private_paths import extension, name_may_identify


@pytest.mark.parametrize(
    "name",
    [
        "IM000001",  # a scanner's export, six digits that are no date (month 00)
        "IM000001.dcm",
        "IMG_0034.JPG",
        "slice_012.png",
        "sub-0001_T1w.nii.gz",
        "CT.png",
        "pneumoniamnist.npz",
        "adrenalmnist3d.npz",
    ],
)
def test_the_names_machines_give_are_kept(name):
    assert not name_may_identify(name)


@pytest.mark.parametrize(
    "name",
    [
        "Smith^John_19600101_chest.png",  # a name and a date of birth
        "Li.png",  # a short surname is still a name
        "JD_chest.png",  # initials
        "MRN4471923.png",  # a record number: seven digits
        "600101.png",  # a six-digit date (YYMMDD)
        "broken.png",  # any word off the list: a name cannot be told from a word
    ],
)
def test_a_name_that_may_identify_is_not_kept(name):
    assert name_may_identify(name)


def test_the_extension_kept_beside_a_pseudonym():
    assert extension("a.nii.gz") == ".nii.gz" and extension("x.PNG") == ".PNG"
    assert extension("1.2.840.113619.2.55") == ""  # a UID's last part is no extension
