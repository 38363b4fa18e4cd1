"""archive -> manifest, the ``medcontrast index`` stage: each file's header, files grouped into
samples (DICOM series), labels joined, identifiers pseudonymised, splits drawn, manifest written."""
