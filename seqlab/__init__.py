"""seqlab: the models of a lecture on sequence and generative neural networks, written from
the lecture's equations, checked against PyTorch, trained on a laptop CPU.

One way in for every model family (``seqlab.runs``)::

    import seqlab
    result = seqlab.train("lstm", max_steps=200)        # or "gpt", "bert", "rbm", "vae", ...
    model, run = seqlab.load(result.run_dir)            # the model and its RunRecord
    print(seqlab.sample(result.run_dir, prompt="def "))
    seqlab.resume(result.run_dir, max_steps=400)

Sections (one sub-package each): ``seqlab.recurrent``, ``seqlab.energy``,
``seqlab.generative``, ``seqlab.transformer``, ``seqlab.llm``.
"""

__version__ = "0.2.0"

_API = ("train", "resume", "load", "sample", "evaluate", "families")


def __getattr__(name: str):
    # the registry imports PyTorch: only when the API is used, not for `seqlab --version`
    if name in _API:
        from seqlab import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'seqlab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
