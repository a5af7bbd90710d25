"""How long a retraining job's fine-tuning takes for each image model on this machine: the trainer's
fine-tuning schedule (FINE_TUNING: at most 8 epochs, a tenth of the learning rate) on the full
synthetic data set, from native weights, with the ONNX export and its parity check; prints a table.
NOT FOR CLINICAL USE.

    python -m scripts.bench_fine_tune [--models skin-lesion chest-ct] [--smoke]

The weights it starts from are a freshly initialised network's (the same tensors a production
version's model.pt / model.weights.h5 holds; the cost per epoch does not depend on their values),
so early stopping rarely ends the run early: an upper bound of a job's training time. The job adds
reading the uploads, INT8 quantisation, the comparison with production and the publish.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from training.candidate import TrainOptions

MODELS = ("skin-lesion", "chest-ct")


def initial_weights(model: str, seed: int) -> bytes:
    """A freshly initialised network's native weights, as the trainer publishes them."""
    if model == "skin-lesion":
        import torch

        from training import skin_lesion

        torch.manual_seed(seed)
        return skin_lesion.native_weights(skin_lesion.build_model()).data
    from training import chest_ct, keras_export

    keras_export.tensorflow(seed)
    return chest_ct.native_weights(chest_ct.build_model()).data


def measure(model: str, smoke: bool, seed: int, folder: Path) -> dict:
    from training.trainers import trainer

    module = trainer(model)
    weights = folder / ("start.pt" if model == "skin-lesion" else "start.weights.h5")
    weights.write_bytes(initial_weights(model, seed))
    options = TrainOptions(smoke=smoke, seed=seed, pretrained=weights, fine_tune=True, quantize=False)
    module.load_data(options)  # the synthetic set is written once and reused (as under make run): not timed
    started = time.perf_counter()
    candidate = module.train(options)
    seconds = time.perf_counter() - started
    return {
        "model": model,
        "epochs": candidate.params["epochs"],
        "epochs_run": candidate.params["epochs_run"],
        "n_train": candidate.training_data["n_train"],
        "seconds": seconds,
        "per_epoch": seconds / candidate.params["epochs_run"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--smoke", action="store_true", help="the tests' smoke fine-tune (smaller set, 3 epochs)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-fine-tune-") as tmp:
        os.environ["LOCAL_STATE_DIR"] = tmp  # synthetic sets and nothing else; removed afterwards
        rows = [measure(model, args.smoke, args.seed, Path(tmp)) for model in args.models]
    schedule = "smoke fine-tune" if args.smoke else "fine-tune"
    print(f"\n{schedule} on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (NOT FOR CLINICAL USE)")
    print(f"{'model':<12} {'train images':>12} {'epochs (max)':>13} {'epochs run':>11} {'seconds':>8} {'s/epoch':>8}")
    for row in rows:
        print(
            f"{row['model']:<12} {row['n_train']:>12} {row['epochs']:>13} {row['epochs_run']:>11} "
            f"{row['seconds']:>8.1f} {row['per_epoch']:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
