"""The lecture's applications of sequence models, each one data + model + metric + anchor:

- machine translation (``translate``): a recurrent encoder-decoder with additive attention
  and the Transformer encoder-decoder, on number phrases made with ``num2words``;
- image captioning (``caption``): a convolutional encoder and a recurrent decoder with soft
  attention over its feature map, on generated scenes;
- speech recognition (``asr``): log-mel features, a convolutional front end, a
  bidirectional recurrent encoder and CTC, on speech synthesised by eSpeak NG;
- text to speech (``tts``): text to a mel spectrogram, Griffin-Lim to a waveform.

Import the submodules directly; this package imports nothing on its own.
"""
