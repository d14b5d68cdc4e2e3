"""Generative reward models and the general-domain tasks they verify (report section 4.2).

- ``verdict``: the judging prompts (grade mode with a reference, pairwise mode) and verdict parsing;
- ``judge``: ``Judge``, a causal LM that writes verdicts, batched, with malformed verdicts counted;
- ``world``: labelled material (answer variants with five grades, world replies of known quality);
- ``data``: the judge's training data and held-out benchmarks;
- ``general``: the ``open_prompt`` and ``instruct`` tasks (registered), references by ``swiss``;
- ``evaluate``: accuracy, swap agreement, best-of-N vs pass@N, longer-wins; the report;
- ``monitor``: the online length-bias monitor and reward shaping of the RL stage;
- ``stage``: ``python -m tasks.envs.genrm.stage``, the DAG's ``genrm`` stage; ``params``: its section.
"""
