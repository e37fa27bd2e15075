"""vssl: video self-supervised learning that generalizes.

Pretrain video backbones (Tubelet-Contrast, SIGMA, VideoMAE, MoCo-style video contrast) and measure
how they generalize on the SEVERE benchmark. ``import vssl`` stays light: torch and friends are
imported by the submodules that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
