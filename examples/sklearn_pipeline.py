"""descentlab inside scikit-learn: a Pipeline with StandardScaler + DescentClassifier.

    python examples/sklearn_pipeline.py
    python examples/sklearn_pipeline.py --tiny     # a few seconds

On the 8×8 digits: standardize the pixels, train an MLP by minibatch SGD with
momentum and early stopping on a 10 % stratified hold-out, choose the learning rate by
3-fold cross-validation with GridSearchCV, and report on a held-out test set.
"""

from __future__ import annotations

import argparse
import os

from sklearn.datasets import load_digits
from sklearn.metrics import classification_report
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from descentlab.sklearn import DescentClassifier


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        default=bool(os.environ.get("DESCENTLAB_EXAMPLES_TINY")),
        help="small network, few epochs, two learning rates (also: DESCENTLAB_EXAMPLES_TINY=1)",
    )
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "net",
                DescentClassifier(
                    hidden=(32,) if args.tiny else (100,),
                    optimizer="momentum",  # SGD with momentum α = 0.9 (Algorithm 8.2)
                    batch_size=32,
                    max_epochs=5 if args.tiny else 100,
                    patience=10,
                    random_state=0,
                ),
            ),
        ]
    )
    learning_rates = [0.003, 0.03] if args.tiny else [0.001, 0.003, 0.01, 0.03, 0.1]
    search = GridSearchCV(pipe, {"net__lr": learning_rates}, cv=3)
    search.fit(X_train, y_train)

    for lr, score in zip(learning_rates, search.cv_results_["mean_test_score"]):
        print(f"lr {lr:<6}  3-fold CV accuracy {score:.2%}")
    net = search.best_estimator_.named_steps["net"]
    print(
        f"chosen lr {search.best_params_['net__lr']}: refit for {net.n_iter_} epochs "
        f"({net.stopped_because_}), best validation accuracy {net.best_validation_score_:.2%}"
    )
    print(f"test accuracy {search.score(X_test, y_test):.2%}")
    print(classification_report(y_test, search.predict(X_test), digits=3))


if __name__ == "__main__":
    main()
