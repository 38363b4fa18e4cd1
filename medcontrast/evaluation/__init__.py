"""Label budgets, probes (linear, kNN, fine-tuning), metrics and the label-efficiency report."""
