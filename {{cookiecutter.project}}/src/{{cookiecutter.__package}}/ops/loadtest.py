"""`make loadtest`: headless locust against the service; fails when the SLO in params is missed."""

# locust patches the standard library for gevent as it is imported: it must come first.
from locust import FastHttpUser, between, events, task  # isort: skip

import argparse
import json
import random
from pathlib import Path

import gevent
from locust.env import Environment

from .. import cli
from ..data import feature_columns, read_table
from ..params import DataParams, SloParams, load


def payloads(table: Path, data: DataParams, count: int) -> list[str]:
    """One-record request bodies from real rows (the test split), so the model does real work."""
    frame = read_table(table, data).head(count)
    numeric, categorical = feature_columns(list(frame.columns), data)
    rows = json.loads(frame[numeric + categorical].to_json(orient="records"))
    return [json.dumps({"records": [row]}) for row in rows]


def run(url: str, bodies: list[str], users: int, seconds: float) -> dict[str, float]:
    """Load the service's /predict with `users` concurrent users; the figures locust measured."""

    class Client(FastHttpUser):
        host = url
        wait_time = between(0, 0)

        @task
        def predict(self) -> None:
            self.client.post(
                "/predict", data=random.choice(bodies), headers={"content-type": "application/json"}
            )

    environment = Environment(user_classes=[Client], events=events)
    runner = environment.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(seconds)
    runner.quit()
    total = environment.stats.total
    return {
        "requests": float(total.num_requests),
        "requests_per_second": float(total.total_rps),
        "p50_ms": float(total.get_response_time_percentile(0.5)),
        "p99_ms": float(total.get_response_time_percentile(0.99)),
        "error_rate": float(total.fail_ratio),
    }


def verdict(figures: dict[str, float], slo: SloParams) -> list[str]:
    """The SLO terms the figures miss."""
    missed = []
    if figures["requests"] == 0:
        missed.append("no request completed")
    if figures["p99_ms"] > slo.p99_ms:
        missed.append(f"p99 {figures['p99_ms']:.0f} ms > {slo.p99_ms:g} ms")
    if figures["error_rate"] > slo.error_rate:
        missed.append(f"error rate {figures['error_rate']:.2%} > {slo.error_rate:.2%}")
    return missed


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="loadtest", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rows", type=Path, default=Path("data/split/test.parquet"))
    args = parser.parse_args(argv)
    params = load()
    figures = run(args.url, payloads(args.rows, params.data, 200), args.users, args.seconds)
    summary = ", ".join(f"{k} {v:.4g}" for k, v in figures.items())
    print(f"loadtest {args.url}: {summary}")
    missed = verdict(figures, params.serve.slo)
    if missed:
        raise cli.UserError(f"SLO missed: {'; '.join(missed)}")


if __name__ == "__main__":
    cli.run(main)
