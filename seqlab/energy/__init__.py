"""The lecture's Hopfield Networks section (energy-based models).

    from seqlab.energy import HopfieldNetwork, ModernHopfield, BoltzmannMachine, RBM

Binary Hopfield network (``hopfield.py``): bipolar units a_i in {-1, +1}, symmetric weights
with zero diagonal, energy E = -1/2 a^T W a - b^T a, Hebbian / pseudo-inverse / Storkey
storage. Modern continuous Hopfield network (``modern.py``, Ramsauer et al. 2020):
xi <- X^T softmax(beta X xi), which is attention with q = xi, K = V = X, scale beta.
Boltzmann machine (``boltzmann.py``): the same energy with stochastic {0, 1} units and
hidden units, learned from data minus model correlations, checked by enumeration;
``parity_demo.py`` shows on n-bit parity that the hidden units are needed.
Restricted Boltzmann machine (``rbm.py``): weights between the layers only, trained by
CD-k / persistent CD; ``rbm_family.py`` trains it through the family registry.
"""

from seqlab.energy.boltzmann import BoltzmannConfig, BoltzmannMachine
from seqlab.energy.hopfield import HopfieldConfig, HopfieldNetwork, RecallResult, as_bipolar
from seqlab.energy.modern import ModernHopfield, capacity_curve, lse
from seqlab.energy.parity_demo import parity_problem
from seqlab.energy.rbm import RBM, RBMConfig

__all__ = ["HopfieldConfig", "HopfieldNetwork", "RecallResult", "as_bipolar", "ModernHopfield", "capacity_curve",
           "lse", "BoltzmannConfig", "BoltzmannMachine", "parity_problem", "RBM", "RBMConfig"]
