"""medtl: medical-imaging transfer learning.

Fine-tunes pretrained backbones for MRI-to-CT cross-modality transfer and chest X-ray
lung-nodule classification, with calibrated evaluation, validation reports and a
clinician review app. Subpackages follow the data flow described in the README:
``io -> data -> models -> transfer -> training -> evaluation -> reports -> inference``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
