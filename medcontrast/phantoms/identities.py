"""Fake but realistic patient identities for the phantom archive's DICOM headers, so that the
privacy of everything downstream can be tested (no real person's data)."""

from __future__ import annotations

import numpy as np

FAMILY = [
    "MUELLER",
    "OKAFOR",
    "NAKAMURA",
    "FERREIRA",
    "KOWALSKI",
    "SOLBERG",
    "HADDAD",
    "MORENO",
    "VAN DER BERG",
    "O'NEILL",
    "ABERNATHY",
    "CASTELLANOS",
    "DUBOIS",
    "LINDQVIST",
    "PETROVA",
    "RAMIREZ",
    "SUZUKI",
    "WHITFIELD",
    "YILMAZ",
    "ZIEGLER",
    "BRENNAN",
    "ACHTERBERG",
]
GIVEN = [
    "ANNA",
    "CHIDI",
    "HARUTO",
    "BEATRIZ",
    "PIOTR",
    "INGRID",
    "LAYLA",
    "MATEO",
    "SANNE",
    "SIOBHAN",
    "THEODORE",
    "LUCIA",
    "AMELIE",
    "OSKAR",
    "DARIA",
    "JAVIER",
    "YUKI",
    "EDMUND",
    "ELIF",
    "FRIEDA",
    "CORMAC",
    "WILLEMIJN",
]
INSTITUTIONS = [
    "Riverside General Hospital",
    "St. Aldric Medical Centre",
    "Northfield University Clinic",
    "Lakeshore Community Hospital",
]
PHYSICIANS = ["HARGREAVES^MARTIN", "OYELARAN^FUNMI", "KEMPF^ULRIKE", "TANAKA^REN"]


def patient_identity(rng: np.random.Generator, i: int) -> dict[str, str]:
    """The identifying DICOM attributes of patient ``i``, drawn from ``rng``."""
    family = FAMILY[int(rng.integers(len(FAMILY)))]
    given = GIVEN[int(rng.integers(len(GIVEN)))]
    year = int(rng.integers(1938, 2006))
    return {
        "PatientName": f"{family}^{given}",
        "PatientID": f"MRN{int(rng.integers(10**7, 10**8))}",
        "PatientBirthDate": f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "PatientSex": "F" if rng.random() < 0.5 else "M",
        "InstitutionName": INSTITUTIONS[i % len(INSTITUTIONS)],
        "ReferringPhysicianName": PHYSICIANS[int(rng.integers(len(PHYSICIANS)))],
        "OtherPatientIDs": f"NHS{int(rng.integers(10**9, 10**10))}",
    }
