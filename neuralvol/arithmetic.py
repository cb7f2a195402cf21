"""The MLP arithmetics a decode may ask for, in a module without torch so that the CLI's
argument parser and the VTK layer (ParaView's reader property) name the same choices as
:func:`neuralvol.evaluate.mlp_dtype`, which gives them their meaning."""

#: float32 (the values the encoder measured), "auto" (bfloat16 where measured harmless) or
#: bfloat16 hidden layers; the first is the core's default
COMPUTE_CHOICES = ("float32", "auto", "bfloat16")
