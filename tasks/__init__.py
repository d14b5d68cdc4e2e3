"""The pipeline's stages: plain functions over files, each with a command-line entry.

- ``tasks.curate``: the data stages of report section 4.1 (clean, dedup, decontaminate, questions,
  SynLogic calibration, pass@k difficulty);
- ``tasks.envs``: the verifiable environments (arithmetic, math, code, SWE, SynLogic), their
  verifiers and the sandbox that runs model-written code;
- ``tasks.train``: the policy, SFT, RL (CISPO) and their checkpoints and tracking;
- ``tasks.config``: params.yaml -> one dataclass per section (the only reader of params.yaml).
"""
