"""The MONAI bundle's postprocessing: logits -> the package's calibrated probabilities.

:class:`~medtl.inference.Predictor` turns logits into probabilities with the package's
calibrator (``Predictor.calibrate``: :func:`medtl.evaluation.calibration.calibrator_from_dict`
of the card's ``calibration``), or with a plain sigmoid / softmax when the package is
uncalibrated. The exported bundle does the same arithmetic with MONAI transforms written into
its own ``configs/inference.json`` (``postprocessing``), reading the fitted parameters from the
config's ``calibration`` section, so a reader of the bundle sees exactly what is applied:

* ``temperature``: ``sigmoid(z / T)`` for one output, ``softmax(z / T)`` for several;
* ``platt``: ``sigmoid(a * z + b)``;
* ``isotonic``: linear interpolation of the logit on the fitted knots, clipped at the ends
  (``numpy.interp``, which is what :class:`~medtl.evaluation.calibration.IsotonicCalibrator`
  applies);
* none: ``sigmoid(z)`` / ``softmax(z)``.

Every step runs in float64, as ``Predictor.calibrate`` does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BundleCalibration", "bundle_calibration", "class_names"]


class BundleCalibration:
    """What the bundle's ``postprocessing`` does, for its config, metadata and docs.

    Args:
        calibration: the card's calibrator dict (``None``: uncalibrated).
        transforms: the ``monai.transforms`` component configs, in order.
        description: one line saying what the output is and how it is computed.
    """

    def __init__(
        self, calibration: dict[str, Any] | None, transforms: list[dict], description: str
    ) -> None:
        self.calibration = calibration
        self.transforms = transforms
        self.description = description

    @property
    def method(self) -> str:
        """The calibrator's name, or ``"none"``."""
        return str(self.calibration["method"]) if self.calibration else "none"

    def config(self) -> dict[str, Any]:
        """The ``postprocessing`` component: a ``monai.transforms.Compose`` of the steps."""
        return {"_target_": "monai.transforms.Compose", "transforms": self.transforms}


def class_names(card: Any) -> list[str]:
    """The package's class names, as ``Predictor.labels`` reads them from the card.

    Args:
        card: the package's :class:`~medtl.models.ModelCard`.

    Returns:
        Two names (negative, positive) for a one-output package, else one per output.
    """
    arch = card.architecture
    names = list(card.labels or (arch.labels if arch is not None else None) or [])
    outputs = int(arch.num_outputs) if arch is not None else 1
    k = 2 if outputs == 1 else outputs
    if len(names) == k:
        return names
    return ["negative", "positive"] if k == 2 else [f"class_{i}" for i in range(k)]


def _calibration_dict(card: Any) -> dict[str, Any] | None:
    cal = card.calibration
    if cal is None:
        return None
    return dict(cal.model_dump(mode="json") if hasattr(cal, "model_dump") else cal)


def _lambda(expression: str) -> dict[str, Any]:
    return {"_target_": "monai.transforms.Lambda", "func": expression}


def bundle_calibration(card: Any) -> BundleCalibration:
    """The postprocessing that gives ``Predictor``'s probabilities from the bundle's logits.

    Args:
        card: the package's model card (architecture, labels, calibration).

    Returns:
        The steps and their description.

    Raises:
        ValueError: the card's calibrator is unknown or invalid, or a binary-only calibrator
            (Platt, isotonic) sits on a multi-output package; ``Predictor`` refuses those too.
    """
    from medtl.evaluation.calibration import calibrator_from_dict

    cal = _calibration_dict(card)
    binary = int(card.architecture.num_outputs) == 1
    names = class_names(card)
    activation = {"_target_": "monai.transforms.Activations"}
    activation.update({"sigmoid": True} if binary else {"softmax": True})
    steps: list[dict[str, Any]] = [
        {"_target_": "monai.transforms.CastToType", "dtype": "$torch.float64"}
    ]
    if cal is not None:
        fitted = calibrator_from_dict(cal)  # the check Predictor makes when it loads
        cal = fitted.to_dict()
    method = cal["method"] if cal else "none"
    if method in ("platt", "isotonic") and not binary:
        raise ValueError(f"a {method} calibrator needs a one-output package")
    if method == "temperature":
        steps += [_lambda("$lambda x, t=@calibration#temperature: x / t"), activation]
        how = f"temperature scaling, T = {cal['temperature']:.6g}"
    elif method == "platt":
        lam = "$lambda x, a=@calibration#a, b=@calibration#b: a * x + b"
        steps += [_lambda(lam), activation]
        how = f"Platt scaling, sigmoid({cal['a']:.6g} * logit + {cal['b']:.6g})"
    elif method == "isotonic":
        lam = (
            "$lambda x, kx=@calibration#x, ky=@calibration#y: "
            "torch.as_tensor(numpy.interp(x.cpu().numpy(), kx, ky))"
        )
        steps.append(_lambda(lam))
        how = f"isotonic regression on {len(cal['x'])} knots"
    else:
        steps.append(activation)
        how = "uncalibrated: plain " + ("sigmoid" if binary else "softmax") + " of the logits"
    if binary:
        what = f"P({names[1]}), the probability of the positive label {names[1]!r}"
        what += f" (P({names[0]}) = 1 - value)"
    else:
        what = "one probability per class (" + ", ".join(names) + ")"
    return BundleCalibration(cal, steps, f"{what}; {how}")
