"""Start-up cost of many sources: 1,000 `prometheus` sources in one process.

Each run is a fresh subprocess (so RSS is its own): build the pipeline, start it
(clients, TLS contexts), then one scrape of every source against a loopback
server serving a Cerebras-shaped page of 27 samples. Two modes in the same run:

- shared: one TLS context per distinct set of CA and certificate files (bridge.http.tls_context);
- per_source: a fresh context for every client, as before it was shared (the peer).

    python bench/bench_sources.py [--sources 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _page() -> str:
    lines = []
    for family in ("requests_count_total", "requests_success_total", "input_tokens_total"):
        lines += [f"# TYPE {family} gauge"] + [f'{family}{{endpoint="ep{e}"}} {e * 7}' for e in range(3)]
    for family in ("ttft_seconds", "tpot_seconds"):
        lines += [f"# TYPE {family} gauge"]
        lines += [
            f'{family}{{endpoint="ep{e}",statistic="{s}"}} 0.{e}{i}'
            for e in range(3)
            for i, s in enumerate(("p50", "p90", "p99"))
        ]
    return "\n".join(lines) + "\n"  # 3 x 3 + 2 x 9 = 27 samples


async def _measure(count: int, mode: str) -> dict[str, float]:
    from bridge.config import parse_config
    from bridge.pipeline import Pipeline
    from tests.servers import ExpositionServer, Response

    if mode == "per_source":
        import bridge.auth as auth

        auth.tls_context = lambda ca=None, cert=None, key=None: ssl.create_default_context(cafile=ca)  # type: ignore[assignment]
    with ExpositionServer() as server:
        server.respond(Response(200, _page()))
        config = parse_config(
            {
                "sources": {f"s{i:04d}": {"type": "prometheus", "url": f"{server.url}?i={i}"} for i in range(count)},
                "sinks": {"out": {"type": "jsonl", "path": "/dev/null"}},
            }
        )
        started = time.perf_counter()
        pipeline = Pipeline(config)
        await pipeline.start(schedule=False)
        start_seconds = time.perf_counter() - started
        start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        batches = await pipeline.collect_all()
        scrape_seconds = time.perf_counter() - started
        await pipeline.stop(grace=1.0)
    assert len(batches) == count and all(b.point_count() == 27 for b in batches)
    return {
        "start_s": start_seconds,
        "start_rss_mb": start_rss,
        "scrape_all_s": scrape_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--child", choices=["shared", "per_source"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_measure(args.sources, args.child))))
        return
    results = {}
    for mode in ("shared", "per_source"):
        out = subprocess.run(
            [sys.executable, __file__, "--sources", str(args.sources), "--child", mode],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.sources} prometheus sources, 27 samples each, one process")
    print(f"{'mode':<12}{'start s':>9}{'RSS after start MB':>20}{'scrape all s':>14}{'peak RSS MB':>13}")
    for mode, r in results.items():
        print(
            f"{mode:<12}{r['start_s']:>9.1f}{r['start_rss_mb']:>20.0f}{r['scrape_all_s']:>14.1f}{r['peak_rss_mb']:>13.0f}"
        )
    shared, peer = results["shared"], results["per_source"]
    print(
        f"shared vs per_source: start {peer['start_s'] / shared['start_s']:.1f}x faster, "
        f"{peer['start_rss_mb'] / shared['start_rss_mb']:.1f}x less memory after start"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
