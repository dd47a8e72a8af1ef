"""Warm standby takeover with the default Lease timings: two real replicas, the active one SIGKILLed.

    python bench/bench_takeover.py [--kills 3] [--lease 15] [--renew 5] [--seed 1]

Two `metrics-bridge run` processes (one cerebras source on the loopback simulator, a jsonl sink each,
`ha` on tests/ha_harness.LeaseStandIn, a stand-in for the Kubernetes Lease endpoints). Each round: at
a random second of the minute (5 to 55: the scrape runs at second 1) the active replica gets SIGKILL;
the takeover time runs from the kill to the standby's first write holding the Lease. The killed one is
started again, under a new pod name, as the next standby. At the end every window from the first to
the last must have been forwarded exactly once across all replicas, and they must be the windows the
simulator served. Takes about a minute a round.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.clock import minute_floor
from bridge.simulator import CerebrasSimulator
from tests.conftest import stop_processes, wait_for
from tests.ha_harness import LeaseStandIn, start_replica, windows


def run(kills: int, lease: float, renew: float, seed: int) -> int:
    rng = random.Random(seed)
    takeovers: list[tuple[float, float]] = []  # (second of the minute killed at, seconds to takeover)
    with (
        tempfile.TemporaryDirectory() as scratch,
        CerebrasSimulator(organization_id="org_ha", api_key="sim-key") as sim,
        LeaseStandIn() as stand_in,
    ):
        directory = Path(scratch)
        names = iter(f"pod-{i}" for i in range(kills + 2))
        processes = {}
        try:
            first = next(names)
            processes[first] = start_replica(first, directory, sim.url, stand_in, lease, renew)
            wait_for(lambda: stand_in.holder() == first, 60, f"{first} holding the Lease")
            standby = next(names)
            processes[standby] = start_replica(standby, directory, sim.url, stand_in, lease, renew)
            for _ in range(kills):
                active = stand_in.holder()
                assert active is not None
                sink = directory / f"{active}.jsonl"
                wait_for(lambda sink=sink: bool(windows(sink)), 90, f"{active} forwarding")
                at = rng.uniform(5.0, 55.0)
                time.sleep((at - time.time() % 60) % 60)
                processes[active].kill()
                killed = time.monotonic()
                processes[active].wait(timeout=10)
                wait_for(lambda s=standby: stand_in.holder() == s, lease + renew + 30, f"{standby} taking over")
                took = next(t for t, holder in stand_in.history if holder == standby and t >= killed) - killed
                takeovers.append((at, took))
                print(f"killed {active} at :{at:04.1f}; {standby} held the Lease {took:.2f} s later", flush=True)
                standby = next(names)
                processes[standby] = start_replica(standby, directory, sim.url, stand_in, lease, renew)
            # The last active one forwards a window after its takeover: then the record is complete.
            active = stand_in.holder()
            boundary = minute_floor(time.time()) + 60.0
            wait_for(
                lambda: any(end / 1e9 >= boundary for end in windows(directory / f"{active}.jsonl")),
                boundary - time.time() + 30,
                f"{active} forwarding the next window",
            )
        finally:
            stop_processes(list(processes.values()))
        forwarded: Counter[int] = Counter()
        for name in processes:
            forwarded += windows(directory / f"{name}.jsonl")
        served = {int(start) for start in sim.served_windows}
    ends = sorted(forwarded)
    doubled = [end for end, count in forwarded.items() if count > 1]
    missing = sorted(set(range(ends[0], ends[-1] + 1, 60 * 10**9)) - set(ends))
    print(f"\nlease {lease:g} s, renew/poll {renew:g} s, {kills} SIGKILLs")
    times = [took for _, took in takeovers]
    print(f"takeover: min {min(times):.2f} s, median {statistics.median(times):.2f} s, max {max(times):.2f} s")
    print(f"windows forwarded: {len(ends)} ({len(doubled)} twice, {len(missing)} missing between first and last)")
    same = {end // 10**9 - 60 for end in ends} == served
    print(f"the simulator served exactly these windows: {same}")
    return 0 if not doubled and not missing and same else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--lease", type=float, default=15.0, help="lease_duration_seconds (default 15)")
    parser.add_argument("--renew", type=float, default=5.0, help="renew_seconds (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="for the seconds of the minute the kills happen at")
    args = parser.parse_args()
    return run(args.kills, args.lease, args.renew, args.seed)


if __name__ == "__main__":
    sys.exit(main())
