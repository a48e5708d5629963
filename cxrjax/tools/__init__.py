"""Layer 9, tools over the whole library: the demo, the loss ablation, the benchmarks and their PyTorch reference."""
