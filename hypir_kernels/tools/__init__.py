"""Developer tools: CUDA toolkit discovery, ahead-of-time Triton compilation, GPU resource report."""
