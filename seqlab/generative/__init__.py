"""The lecture's Generative Adversarial Networks section: GANs, variational auto-encoders and
diffusion models (DDPM, DDIM), with one evaluation protocol for all three.

Images are float tensors (B, C, H, W) with pixel values in [0, 1]; each model maps them to
the range it works in (the GAN and the diffusion model use [-1, 1]).
"""
