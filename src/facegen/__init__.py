"""facegen: faces with the attributes you ask for.

Three models behind one interface: a conditional GAN, Fader Networks and a
conditional VAE, trained on CelebA, fast on a plain CPU.
"""

__version__ = "0.1.0"
