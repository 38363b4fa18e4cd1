"""manifest -> cached, preprocessed tensors -> batches: what learning reads of an archive."""
