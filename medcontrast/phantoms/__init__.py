"""The embedded synthetic archive: DICOM and NIfTI phantoms with a labels CSV (a source of
archives for the demo and the tests, not part of reading them)."""
