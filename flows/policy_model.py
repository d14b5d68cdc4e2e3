"""A policy directory as an MLflow pyfunc model (MLflow's "models from code": this file is the model).

    mlflow.pyfunc.load_model("runs:/<run id>/policy").predict(pd.DataFrame({"question": ["12+34="]}))

The flow logs each stage's ``policy/`` with this file (``flows.mlflow_runs``); the HF-format files
(weights, config, tokenizer) are the model's artifacts. Neither transformers' flavour (our
``M1ForCausalLM`` is a plain ``nn.Module`` without a transformers class) nor the pytorch flavour
(a pickle of the module) fits, so loading goes through ``tasks.train.policy.load_policy``, which
reads both our model and any HF causal LM: the project must be installed where the model is loaded.
``predict`` samples one reply per question.
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import pandas as pd


class PolicyModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from tasks.train.policy import load_policy

        self.model, self.tok = load_policy(context.artifacts["policy"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list[str]:
        import torch

        from model.generation import SamplingParams
        from tasks.train.policy import SamplingPolicy

        p = {"max_new_tokens": 64, "temperature": 1.0, "top_p": 0.95, "seed": 0, **(params or {})}
        sampling = SamplingParams(max_new_tokens=int(p["max_new_tokens"]), temperature=float(p["temperature"]),
                                  top_p=float(p["top_p"]), stop_token_ids=(self.tok.eos_token_id,))
        policy = SamplingPolicy(self.model, self.tok, sampling, batch_size=32, seed=int(p["seed"]))
        with torch.no_grad():
            return [replies[0] for replies in policy.sample(list(model_input["question"]), 1)]


mlflow.models.set_model(PolicyModel())
