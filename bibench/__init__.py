"""bibench: a reproducible benchmark pipeline for network binarization.

Importing the package is cheap (no torch): the Snakefile imports `bibench.catalog` at parse time.
"""

__version__ = "0.1.0"
