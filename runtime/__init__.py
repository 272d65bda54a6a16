"""What every daemon's life shares, below everything else: data dirs, files, readiness, drain, HTTP, SQLite.

- `lifecycle`: `claim_data_dir`, `open_daemon` and `Daemon.serve` (ready.json, signals, the `Drain`),
  `InFlight`, the one count of work in progress a drain waits for
- `ready`: `<data dir>/ready.json` (`READY_FILE`), written once serving; `DataDirInUse`
- `files`: `write_atomically`, the one durability rule for files we write; `make_private_dir` (0700)
- `home`: `DOLPHIN_HOME` (~/.dolphin), the one default home; `chain_home`
- `settings`: daemon settings from options, environment, the TOML file and documented defaults
- `http`: `serve_http`, serving a Starlette app (the node's local API, the validator's, the gateway's)
- `sqlite`: `open_database`, durable SQLite (committed before acknowledged) inside trio
- `stacks`: `run_with_stack_dumps`, how every command answers `kill -USR1` with its threads' stacks and its
  trio tasks' awaits
"""
