"""SynthSEVERE: a built-in synthetic stand-in for the SEVERE benchmark (see docs/synthsevere.md).

``generate(out, preset, seed, workers)`` renders an unlabelled-for-SSL pretraining corpus and the
datasets behind 8 downstream experiments, writes them as H.264 mp4 files plus annotation files in
the real datasets' formats, and describes every experiment in ``synthsevere.json``
(``load_description(out)``)::

    from vssl.data.synth import PRESETS, generate, load_description

Inside: motions (trajectories), render (pixels), tasks (classes), writers (files), describe (the
JSON description and README), benchmark (presets and the whole benchmark on disk).
"""

from vssl.data.synth.benchmark import (DATASETS, DAVIS_DIR, FPS, PRESETS, Preset, generate, load_description,
                                       render_video)

__all__ = ["DATASETS", "DAVIS_DIR", "FPS", "PRESETS", "Preset", "generate", "load_description", "render_video"]
