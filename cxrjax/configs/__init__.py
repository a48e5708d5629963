"""Configurations. `default`: the base config, values only; `demo`: the laptop demo's; `arguments`: how an experiment
file reads its config arguments (`:smoke`, `:scratch`, a row's choices); `ge2018`: what Ge 2018's seven rows share.
Each `experiments/<row>.py` starts from `default.get_config()` and sets, in its own `get_config()`, what its row
changes."""
