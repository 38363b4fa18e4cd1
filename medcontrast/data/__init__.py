"""Archive indexing, the manifest, phantoms, preprocessing and cached datasets."""
