"""The closed loop from Python: a reaction-yield campaign on a simulated station.

python examples/python_api.py
"""

from __future__ import annotations

import genesis_platform as genesis
from genesis_platform import Budget, Choice, Real, on_station


def main() -> genesis.CampaignInfo:
    """Run a short campaign and print where its results are."""
    with genesis.Platform.open() as p:
        campaign = p.campaigns.create(
            name="yield-python",
            space={
                "temperature_c": Real(40, 120),
                "time_min": Real(5, 240),
                "equivalents": Real(1.0, 4.0),
                "catalyst": Choice(["Pd(PPh3)4", "Pd(dppf)Cl2", "XPhos Pd G3"]),
            },
            objectives={"yield": "max"},
            planner="gp",
            runner=on_station("reaction-yield", latency_s=0.05),
            budget=Budget(trials=16, parallel=2),
            seed=5,
        )
        info = campaign.run(progress=True)
        print(f"best yield {info.best:.1f} % at {info.best_params}")
        print(f"observations in dataset {info.dataset}, surrogate in model {info.model}")
        surrogate = p.models.load(info.model)
        mean, std = surrogate.predict([info.best_params])
        print(f"the surrogate predicts {mean[0]:.1f} ± {std[0]:.1f} % there")
        return info


if __name__ == "__main__":
    main()
