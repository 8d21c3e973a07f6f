"""A Ray cluster of several nodes on this machine, every server on 127.0.0.1 (trying scale-out, demos).

`ray start --node-ip-address 127.0.0.1` does not give that: Ray's CLI replaces 127.0.0.1 with the
host's outward address, and its servers then listen on every interface (checked with `ss -ltnp` on Ray
2.60). This starts the nodes through Ray's own cluster utility with the loopback address kept, prints
the address to pass to `affectstream run --ray`, and runs until Ctrl-C or SIGTERM, then stops them:

    python -m affectstream.engine.distributed.local_cluster --nodes 2 --port 6380
    affectstream run --ray 127.0.0.1:6380 --no-reasoning a=clip.mp4 b=clip.mp4 ...

On real machines use `ray start --head` and `ray start --address HEAD:PORT` (or KubeRay).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m affectstream.engine.distributed.local_cluster")
    ap.add_argument("--nodes", type=int, default=2, help="nodes, the head included (default 2)")
    ap.add_argument("--port", type=int, default=6380, help="the head's GCS port on 127.0.0.1")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs each node offers (default 2)")
    ap.add_argument("--object-store-mb", type=int, default=512, help="object store per node (MiB)")
    a = ap.parse_args(argv)
    if a.nodes < 1 or not 0 < a.port < 65536 or a.num_cpus < 1:
        print("local_cluster: need --nodes >= 1, a valid --port and --num-cpus >= 1", file=sys.stderr)
        return 2
    from affectstream.engine.executor.ray_backend import _keep_loopback

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _keep_loopback()
    try:
        from ray.cluster_utils import Cluster
    except ImportError:
        print("local_cluster: ray is not installed: pip install 'affectstream[ray]'", file=sys.stderr)
        return 2
    node = {
        "num_cpus": a.num_cpus,
        "node_ip_address": "127.0.0.1",
        "object_store_memory": a.object_store_mb << 20,
    }
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={**node, "include_dashboard": False, "gcs_server_port": a.port},
    )
    try:
        for _ in range(a.nodes - 1):
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        print(
            f"local_cluster: {a.nodes} node(s) up; run: affectstream run --ray {cluster.address} ...",
            flush=True,
        )
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
