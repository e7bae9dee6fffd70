"""The lecture's recurrent section: Elman RNN, BPTT, vanishing and exploding gradients,
LSTM and GRU.

    from seqlab.recurrent import RNN, LSTM, GRU
"""

from seqlab.recurrent.gru import GRU, GRUConfig
from seqlab.recurrent.lstm import LSTM, LSTMConfig
from seqlab.recurrent.rnn import RNN, RNNConfig

__all__ = ["RNN", "RNNConfig", "LSTM", "LSTMConfig", "GRU", "GRUConfig"]
