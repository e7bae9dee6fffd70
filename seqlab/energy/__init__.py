"""The lecture's Hopfield Networks section (energy-based models).

    from seqlab.energy import HopfieldNetwork, ModernHopfield, as_bipolar

Binary Hopfield network (``hopfield.py``): bipolar units a_i in {-1, +1}, symmetric weights
with zero diagonal, energy E = -1/2 a^T W a - b^T a, Hebbian / pseudo-inverse / Storkey
storage. Modern continuous Hopfield network (``modern.py``, Ramsauer et al. 2020):
xi <- X^T softmax(beta X xi), which is attention with q = xi, K = V = X, scale beta.
"""

from seqlab.energy.hopfield import HopfieldNetwork, RecallResult, as_bipolar
from seqlab.energy.modern import ModernHopfield, capacity_curve, lse

__all__ = ["HopfieldNetwork", "RecallResult", "as_bipolar", "ModernHopfield", "capacity_curve", "lse"]
