"""Classical scikit-learn anchors (logistic regression, SVC, random forest, k-NN)."""
