"""Two-view augmentation: per-sample MONAI transforms or batched on the training device."""
