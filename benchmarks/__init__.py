"""Side-by-side HTTP benchmarks of pipeserve against KServe and simple baselines (`make bench`)."""
