"""SynthSEVERE internals: motions (trajectories), render (pixels), tasks (classes), writers (files).

The public API is ``vssl.data.synthetic`` (``generate``, ``load_description``, ``PRESETS``).
"""
