"""EDM, the E(3)-equivariant diffusion model over 3D coordinates and atom types: the model
(:mod:`.model`), its variational bound (:mod:`.vlb`) and the records it scores (:mod:`.records`)."""
from .model import EDM, LOSS_WEIGHTINGS, PARAMETERIZATIONS, QM9_TYPES, remove_mean

__all__ = ["EDM", "LOSS_WEIGHTINGS", "PARAMETERIZATIONS", "QM9_TYPES", "remove_mean"]
