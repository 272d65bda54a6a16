"""The `dolphin` command: one thin subcommand module per area, each a few lines over a library call.

- `main`: the `dolphin` group, with every area registered; `logs`: one timestamped line per event
- `options`: options shared by the daemon commands (one per setting, with its environment variable)
- `node`, `validator`, `gateway`, `relay`: the daemons, their config files and their one-shot commands
- `ask`: one question through the network; `model`: model folders, and what the network serves
- `chain`: deployment and everything operators, validators and API users do on chain
- `rewards`: the settler's epoch close and the reward boost simulation (docs/rewards.md)
- `demo`: the whole network on this machine; `demo_cheater`: the demo's cheating node
"""
