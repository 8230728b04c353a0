"""Classical anchors from scikit-learn: logistic regression, SVC, random forest, k-NN.

They run on flattened inputs and return ``predict_proba``; they sit on every table so a deep
method's row can be read against a strong classical baseline tuned with the same budget.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import hookimpl
from harness.info import MethodInfo

if TYPE_CHECKING:  # numpy, torch and scikit-learn load with the first fit, not with the listing
    import numpy as np
    import torch

KINDS = ("image", "tabular", "graph")


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("logreg", KINDS, "multinomial logistic regression (scikit-learn, L2)", "scikit-learn",
                   defaults={"C": 1.0}),
        MethodInfo("svc", KINDS, "RBF support-vector classifier with Platt-scaled probabilities (scikit-learn)",
                   "Platt, 1999; scikit-learn", defaults={"C": 10.0, "gamma": "scale"}),
        MethodInfo("random_forest", KINDS, "random forest (scikit-learn)", "Breiman, 2001",
                   defaults={"n_estimators": 300, "max_features": "sqrt", "min_samples_leaf": 1}),
        MethodInfo("knn", KINDS, "k-nearest neighbours (scikit-learn)", "scikit-learn",
                   defaults={"n_neighbors": 5, "weights": "distance"}),
    ]


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    if method == "logreg":
        return {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}
    if method == "svc":
        return {"C": trial.suggest_float("C", 1e-1, 1e3, log=True),
                "gamma": trial.suggest_categorical("gamma", ["scale", "auto"])}
    if method == "random_forest":
        return {"n_estimators": trial.suggest_int("n_estimators", 50, 400, log=True),
                "max_features": trial.suggest_categorical("max_features", ["sqrt", "log2"]),
                "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 5)}
    return {"n_neighbors": trial.suggest_int("n_neighbors", 1, 25),
            "weights": trial.suggest_categorical("weights", ["uniform", "distance"])}


def _numpy(x: torch.Tensor) -> np.ndarray:
    import numpy as np

    return x.detach().reshape(x.shape[0], -1).cpu().numpy().astype(np.float64)


def _build(method: str, config: dict[str, Any], seed: int):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    if method == "logreg":
        return LogisticRegression(C=config["C"], max_iter=2000)
    if method == "svc":
        # Platt scaling fitted on cross-validation folds (what SVC(probability=True) did internally).
        return CalibratedClassifierCV(SVC(C=config["C"], gamma=config["gamma"], random_state=seed),
                                      method="sigmoid", ensemble=False, cv=5)
    if method == "random_forest":
        return RandomForestClassifier(n_estimators=config["n_estimators"], max_features=config["max_features"],
                                      min_samples_leaf=config["min_samples_leaf"], random_state=seed, n_jobs=1)
    return KNeighborsClassifier(n_neighbors=config["n_neighbors"], weights=config["weights"])


class _Fitted:
    def __init__(self, model, classes: np.ndarray, num_classes: int):
        self.model, self.classes, self.num_classes = model, classes, num_classes


@hookimpl
def harness_fit(method: str, task, config: dict[str, Any], ctx):
    x, y = _numpy(task.train.x), task.train.y.cpu().numpy()
    model = _build(method, config, ctx.seed).fit(x, y)
    ctx.samples_seen += len(y)
    return _Fitted(model, model.classes_, task.num_classes)


@hookimpl
def harness_evaluate(method: str, fitted: _Fitted, split, ctx) -> torch.Tensor:
    import numpy as np
    import torch

    proba = fitted.model.predict_proba(_numpy(split.x))
    # Classes missing from train get probability zero; columns follow the task's class ids.
    out = np.zeros((proba.shape[0], fitted.num_classes))
    out[:, fitted.classes] = proba
    return torch.as_tensor(out)
