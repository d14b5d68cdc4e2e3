"""Training (report sections 2-3): the policy (ours or any Hugging Face causal LM), SFT, RL.

``policy`` builds, saves, loads and samples a policy; ``sft`` and ``rl/`` train it; ``checkpoint``
and ``tracking`` hold what both share (step-numbered atomic checkpoints, metrics to MLflow);
``agreement`` measures train/inference probability agreement (Figure 3).
"""
