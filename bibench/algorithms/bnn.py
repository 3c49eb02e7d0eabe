"""BNN (Courbariaux et al., 2016): sign on weights and activations, no scaling factor.

Gradient: clip-STE (paper Eq. 12), passing the gradient where |x| <= 1.
"""

from bibench.algorithms import register
from bibench.algorithms.base import Algorithm


@register
class BNN(Algorithm):
    name = "bnn"
    title = "BNN"
    reference = "Courbariaux et al., 2016"
    # The base class's defaults are BNN: clip-STE sign for weights and inputs, no scale.
