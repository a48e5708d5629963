"""The paper configs, one file per row (README.md here). Installed, this folder is the package `cxrjax.experiments`
(setup.py maps it), so `cxrjax train --config cxrjax:experiments/<file>.py` finds a file outside a checkout too."""
