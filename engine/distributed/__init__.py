"""Running streams on a Ray cluster (`affectstream run --ray [ADDRESS]`).

- `registry.py`: the per-stream ledger (epoch fencing, write-ahead window index, heartbeats, gaps);
- `stream_actor.py`: one actor per stream: source, windower, smoother, MQTT publishing;
- `placement.py`: which node a stream goes to (by load, avoiding nodes that just failed);
- `coordinator.py`: creates the pool, registry and stream actors, watches them, restarts the dead.

Nothing here imports `ray` at module import time except the modules that are only reached with
`--ray`; see README "Scaling out".
"""
