"""`make load`'s Locust users: a weighted mix of tabular, image and model-view requests against any
base URL (`--host`: the local stack, or a deployed stage such as
https://<id>.execute-api.<region>.amazonaws.com/v1). Run from the repository root, with the Locust
of .venv-tools/locust (`make load` does both).

Each user first sends one request of every route (so even a short run covers the whole mix), then
picks tasks by weight, 0.1-0.5 s apart. A request fails unless its status is the expected one and
its JSON has the expected shape (scripts/load/mix.py). Requests are named by route, so Locust's
statistics group per route. LOAD_HEADERS='{"Authorization": "..."}' adds headers to every request.
Nothing here uploads, retrains or writes. NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import csv
import itertools
import os

from locust import HttpUser, between, events, task
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from scripts.load import mix

TIMEOUT_SECONDS = 60
HEADERS = mix.extra_headers(os.environ)
ONE_ROW = {"instances": [mix.malignant_row()]}
BATCH = {"instances": mix.batch(mix.malignant_row())}
LITE = {"instances": [mix.LITE_ROW]}
IMAGES = {model: mix.example_images(model) for model in mix.IMAGE_MODELS}


def judge(response, check, *args) -> None:
    """Marks a `catch_response` response a success or a failure by `check` (mix.check_*)."""
    try:
        body = response.json()
    except ValueError:
        response.failure(f"status {response.status_code}, not JSON: {(response.text or '')[:200]!r}")
        return
    problem = check(response.status_code, body, *args)
    if problem:
        response.failure(problem)
    else:
        response.success()


@events.init_command_line_parser.add_listener
def final_csv_argument(parser) -> None:
    parser.add_argument(
        "--final-csv",
        default="",
        help="write <prefix>_stats.csv and <prefix>_failures.csv (Locust's --csv columns) once every user has stopped",
    )


@events.test_stop.add_listener
def write_final_csv(environment, **_kwargs) -> None:
    """Locust's own --csv files are rewritten once a second and not at the end, so they can miss the
    run's last second; these are written when every user has stopped, from the final statistics."""
    prefix = getattr(environment.parsed_options, "final_csv", "")
    if not prefix:
        return
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with open(f"{prefix}_stats.csv", "w", newline="") as stats:
        writer.requests_csv(csv.writer(stats))
    with open(f"{prefix}_failures.csv", "w", newline="") as failures:
        writer.failures_csv(csv.writer(failures))


class ApiUser(HttpUser):
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.client.headers.update(HEADERS)
        self._images = {model: itertools.cycle(images) for model, images in IMAGES.items()}
        self._models = itertools.cycle(mix.MODELS)
        for request in (
            self.predict_one_row,
            self.predict_batch,
            self.predict_lite,
            self.predict_skin_lesion,
            self.predict_chest_ct,
            self.model_view,
            self.model_list,
            self.health,
        ):
            request()

    def _predict(self, model: str, name: str, count: int, **body) -> None:
        with self.client.post(
            f"/models/{model}/predict", name=name, catch_response=True, timeout=TIMEOUT_SECONDS, **body
        ) as response:
            judge(response, mix.check_predictions, model, count)

    def _image(self, model: str, name: str) -> None:
        image = next(self._images[model])
        self._predict(model, name, 1, data=image, headers={"Content-Type": "image/png"})

    @task(6)
    def predict_one_row(self) -> None:
        self._predict("breast-cancer", mix.ONE_ROW, 1, json=ONE_ROW)

    @task(2)
    def predict_batch(self) -> None:
        self._predict("breast-cancer", mix.BATCH, mix.BATCH_ROWS, json=BATCH)

    @task(3)
    def predict_lite(self) -> None:
        self._predict("breast-cancer-lite", mix.LITE, 1, json=LITE)

    @task(3)
    def predict_skin_lesion(self) -> None:
        self._image("skin-lesion", mix.SKIN_LESION)

    @task(3)
    def predict_chest_ct(self) -> None:
        self._image("chest-ct", mix.CHEST_CT)

    @task(2)
    def model_view(self) -> None:
        model = next(self._models)
        with self.client.get(
            f"/models/{model}", name=mix.MODEL_VIEW, catch_response=True, timeout=TIMEOUT_SECONDS
        ) as response:
            judge(response, mix.check_model_view, model)

    @task(1)
    def model_list(self) -> None:
        with self.client.get(mix.MODEL_LIST, catch_response=True, timeout=TIMEOUT_SECONDS) as response:
            judge(response, mix.check_model_list)

    @task(1)
    def health(self) -> None:
        with self.client.get(mix.HEALTH, catch_response=True, timeout=TIMEOUT_SECONDS) as response:
            judge(response, mix.check_health)
