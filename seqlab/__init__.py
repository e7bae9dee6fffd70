"""seqlab: the models of a lecture on sequence and generative neural networks,
written from the lecture's equations, checked against PyTorch, trained on a laptop CPU.

Sections (one sub-package each): ``seqlab.recurrent`` (RNN, BPTT, LSTM, GRU).
"""

__version__ = "0.1.0"
