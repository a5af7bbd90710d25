"""The native baseline for `make bench`: a Flask service shaped like the reference projects (001, 004).

It loads a pickled (joblib) scikit-learn pipeline once at startup and calls ``predict_proba`` per request on
``{"features": [[...30 numbers...], ...]}``. Served by werkzeug's threaded server, which speaks HTTP/1.1, so
a client can keep one connection alive (gunicorn's sync workers close every connection).

    python -m scripts.flask_baseline --model pipeline.joblib --port 8000

Research and education only - NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import argparse
import sys

import joblib
import numpy as np
from flask import Flask, jsonify, request
from werkzeug.serving import make_server


def create_app(model_path: str) -> Flask:
    model = joblib.load(model_path)
    app = Flask(__name__)

    @app.get("/health")
    def health():
        return {"status": "healthy"}

    @app.post("/predict")
    def predict():
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict) or "features" not in payload:
            return jsonify(error='send {"features": [[...numbers...]]}'), 400
        try:
            features = np.asarray(payload["features"], dtype=np.float64)
        except (TypeError, ValueError):
            return jsonify(error="features must be numbers"), 422
        if features.ndim == 1:
            features = features.reshape(1, -1)
        proba = model.predict_proba(features)
        # Labels and every class probability: the same information our API returns.
        return jsonify(predictions=np.argmax(proba, axis=1).tolist(), probabilities=proba.tolist())

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="joblib file of a fitted scikit-learn pipeline")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, create_app(args.model), threaded=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
