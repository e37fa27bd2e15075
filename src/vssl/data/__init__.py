"""Video data layer: decoders, clip sampling, batched transforms and dataset adapters."""
