"""``seqlab explore``: the lecture's interactive widgets as a local web app.

The server (``app.py``) is FastAPI on uvicorn: each widget is one module here with an
``APIRouter`` of JSON endpoints over seqlab's own Python API (the real model code, never
precomputed pictures), and one plain JavaScript module in ``static/`` that draws it. The
widgets, in the order the index lists them (``WIDGETS`` in ``app.py``):

- ``unfold``: the unrolled RNN and the weight copies dC/dw uses (``seqlab.recurrent.unfold``);
- ``gradflow``: ||dC/da_t|| over t for a weight scale and cell (``seqlab.recurrent.gradflow``);
- ``attention``: every layer's and head's attention of a GPT or BERT run, and the next token;
- ``sampling``: tokens streamed from a language-model run, with temperature, top-k, top-p;
- ``hopfield``: asynchronous recall one update at a time, with its energy;
- ``generative``: a DDPM/DDIM trajectory, a VAE's 2-D latent map, a GAN's samples;
- ``runs``: the run directories under RUNS_DIR with their curves and configuration.

Every input is checked on the server (``common.py``): a bad request is a 4xx answer with one
line, ``{"error": "..."}``. Runs are read only below RUNS_DIR and never unpickled.
"""
