"""python -m model

Prints the parameter counts (total, active per token, active without the embedding and LM head)
of every preset in model/config.py.
"""

from model.config import PRESETS, M1Config


def main() -> None:
    print(f"{'preset':12s} {'layers':>6s} {'total':>16s} {'active':>16s} {'active w/o embed':>17s}")
    for name in PRESETS:
        cfg = M1Config.preset(name)
        n = cfg.num_parameters()
        print(f"{name:12s} {cfg.num_hidden_layers:6d} {n['total']:16,d} {n['active']:16,d} "
              f"{n['active_non_embedding']:17,d}")


if __name__ == "__main__":
    main()
