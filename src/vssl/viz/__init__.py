"""Visualisations and analyses of what models learn (issue 9): tubelet sheets, reconstructions and
prototype maps, saliency, and unsupervised video object segmentation in the DAVIS-2017 convention.

Submodules import matplotlib/PIL lazily; ``import vssl.viz`` stays light.
"""
