"""Networks by name: ``create_model("cnn", task)``, ``create_model("timm:resnet18", task)``.

Every model is a :class:`Classifier`: an ``encoder`` that maps inputs to a feature vector of size
``feature_dim`` and a linear ``head``. Methods that pre-train, probe or adapt encoders rely on that
split; everything else just calls the model. The built-in networks (:mod:`.builtin`) register
themselves when this package is imported.
"""
from harness.toolkit.models import builtin as _builtin  # noqa: F401  (registers mlp, cnn, cnn3, lenet)
from harness.toolkit.models.classifier import Classifier
from harness.toolkit.models.registry import (
    count_parameters, create_model, list_models, model_arguments, network_from_config, register_model,
)

__all__ = ["Classifier", "create_model", "list_models", "model_arguments", "network_from_config", "register_model",
           "count_parameters"]
