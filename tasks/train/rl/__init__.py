"""CISPO reinforcement learning (report section 3.1) and its baselines, GRPO and DAPO.

- ``losses.policy_loss``: CISPO (Eq. 4-5), the unified token mask (Eq. 6-7), GRPO, DAPO.
- ``advantages.group_advantages``: group-relative advantages.
- ``sampling``: DAPO's dynamic sampling and overlong penalty.
- ``train.train_rl``: the driver loop (``python -m tasks.train.rl.train``).
"""
