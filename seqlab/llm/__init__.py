"""GPT and BERT: tokenizers (``seqlab.llm.tokenizers``), sampling and decoding
(``seqlab.llm.sampling``), and the models that use them.

Import the submodules directly; this package imports nothing on its own, so that
``seqlab.recurrent`` can use the sampler without loading the Hugging Face tokenizers.
"""
