"""Benchmark definitions (TaskSpecs), grouped by kind; the registry collects them."""
