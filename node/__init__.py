"""The node daemon and what it serves: model manifests, engines, the inference service, ledger, local API.

- `daemon`: `serve_node(config)`, the daemon itself (what `dolphin node` runs), composed of its units
- `slots`: a model slot per model folder: verified, its engine benchmarked, its announcer and attestations
- `config`: `NodeConfig`, its TOML file and environment variables
- `models`: manifests (the model id), the tiny and SmolLM2 builders, the offline loader
- `engines`: the `Engine` interface and the in-process transformers engine (batched)
- `inference`: `InferenceService`, the stream handler answering sealed requests with an encrypted stream
- `tokenizer_files`: the models' manifests and tokenizer files served to clients (exact bills)
- `ledger`: countersigned receipts and replay nonces in SQLite (committed before acknowledged)
- `credits`: clients' on-chain credit (cached) and the policy for unpaid requests
- `keys`: the node's X25519 keys, persisted and rotated
- `registration`: the operator binding, registered on chain and kept in the data dir
- `announce`: the signed DHT pool record and heartbeats that tell clients this node serves a model
- `benchmark`: the cached self-benchmark and its signed attestations
- `local_api`: the operator's OpenAI-compatible API, /metrics and the dashboard on 127.0.0.1
- `metrics`: Prometheus metrics
- `status`: the status model behind /status and the dashboard (rates, strikes against us, chain facts)
- `dashboard`: the node's and the validator's dashboard pages and their routes (assets shipped inside)
- `owner`: whether the machine's owner is busy (GPU through NVML, else CPU)
- `testing`: a pool of node processes, pool lookups and long answers, for tests
- `processes`: `node_process`, `dolphin node` as an OS process (the demo, tests, benchmarks)
- `errors`: `NodeError` and its subclasses
- `submission`: the paid receipts handed to every current validator's peer
- `unacknowledged`: no free answers: payers who keep answers uncountersigned are refused for a while
"""

from node.errors import ModelError, ModelSourceMissing, NodeError
from node.inference import InferenceService, ServiceLimits

__all__ = ["InferenceService", "ModelError", "ModelSourceMissing", "NodeError", "ServiceLimits"]
