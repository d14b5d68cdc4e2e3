"""The pipeline's stages: plain functions over files, each with a command-line entry.

- ``tasks.curate``: the data stages of report section 4.1 (clean, dedup, decontaminate, questions,
  SynLogic calibration, pass@k difficulty);
- ``tasks.envs``: the verifiable environments (arithmetic, math, code, SWE, SynLogic), their
  verifiers and the sandbox that runs model-written code;
- ``tasks.train``: the policy, SFT, RL (CISPO) and their checkpoints and tracking;
- ``tasks.config``: params.yaml -> one dataclass per section (the only reader of params.yaml).
"""

import os
from pathlib import Path

#: the project folder: params.yaml, data/, runs/ and the tools' state live here
ROOT = Path(__file__).resolve().parent.parent
# Whoever runs a stage (the flow, `dvc repro`, a person), its tools keep their state in the project,
# not the home directory or the machine's shared caches (DVC kept a hash database per project
# root in /var/tmp/dvc), and send no usage telemetry (the pipeline runs offline; DVC's analytics
# daemon left a file in /tmp per `dvc commit`). A caller's own settings win.
for _name, _value in {
    "MPLCONFIGDIR": str(ROOT / ".cache" / "matplotlib"),
    "TRITON_CACHE_DIR": str(ROOT / ".cache" / "triton"),
    "DVC_SITE_CACHE_DIR": str(ROOT / ".cache" / "dvc"),
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)
