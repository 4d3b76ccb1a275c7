"""EDM, the E(3)-equivariant diffusion model over 3D coordinates and atom types: the model
(:mod:`.model`, conditional on QM9's DFT properties when built with ``conditions``), its variational
bound (:mod:`.vlb`), the records it scores (:mod:`.records`) and the property predictor that scores a
conditional model by EDM's protocol (:mod:`.predictor`)."""
from .model import EDM, LOSS_WEIGHTINGS, PARAMETERIZATIONS, QM9_TYPES, remove_mean

__all__ = ["EDM", "LOSS_WEIGHTINGS", "PARAMETERIZATIONS", "QM9_TYPES", "remove_mean"]
