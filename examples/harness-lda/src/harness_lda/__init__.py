"""Shrinkage linear discriminant analysis as a harness method."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from harness import MethodInfo, hookimpl


@hookimpl
def harness_methods():
    return [MethodInfo("lda", ("image", "tabular"), "linear discriminant analysis with covariance shrinkage",
                       citation="Ledoit & Wolf, 2004", defaults={"shrinkage_mode": "auto"})]


@hookimpl
def harness_search_space(method, trial, task):
    mode = trial.suggest_categorical("shrinkage_mode", ["auto", "fixed"])
    if mode == "auto":
        return {"shrinkage": "auto"}
    return {"shrinkage": trial.suggest_float("shrinkage", 1e-3, 1.0, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    x = task.train.x.flatten(1).cpu().numpy().astype(np.float64)
    model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=config["shrinkage"]).fit(x, task.train.y.cpu().numpy())
    ctx.samples_seen += len(x)
    return model, task.num_classes


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    model, num_classes = fitted
    proba = model.predict_proba(split.x.flatten(1).cpu().numpy().astype(np.float64))
    out = np.zeros((len(proba), num_classes))  # columns follow the task's class ids
    out[:, model.classes_] = proba
    return torch.as_tensor(out)
