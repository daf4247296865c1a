"""Emulators of real experiments: physically grounded models with measurement noise.

An emulator is what answers a :class:`~genesis_platform.labs.simulated.SimulatedStation`:
it names its parameters (with units and bounds) and measurements, and maps a parameter
point to measured values. Each emulator reproduces the shape and magnitudes of a published
experiment, so planners face realistic landscapes: interior optima, interactions between
parameters, categorical choices that change the optimum, and noise of the size real
instruments show.

Built-ins, by name (:data:`EMULATORS`):

- ``electrolyte`` -- ionic conductivity of LiPF6 in carbonate solvents
  (:class:`ElectrolyteConductivity`).
- ``reaction-yield`` -- yield of a Pd-catalysed Suzuki-Miyaura coupling
  (:class:`SuzukiCouplingYield`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from genesis_platform.errors import InvalidInput
from genesis_platform.planning.protocols import Params, ParamValue
from genesis_platform.planning.space import Choice, Int, Parameter, Real, Space

__all__ = [
    "EMULATORS",
    "AnalyticEmulator",
    "ElectrolyteConductivity",
    "Emulator",
    "SuzukiCouplingYield",
    "get_emulator",
]

_GAS_CONSTANT_KJ = 8.314462618e-3
"""Molar gas constant in kJ/(mol K)."""

_ZERO_CELSIUS_K = 273.15


@runtime_checkable
class Emulator(Protocol):
    """A simulated experiment: parameters in, noisy measurements out."""

    @property
    def name(self) -> str:
        """Registered name (also the built-in station's name)."""
        ...

    @property
    def description(self) -> str:
        """One paragraph for people: what is measured and how it is modelled."""
        ...

    @property
    def parameters(self) -> Mapping[str, Mapping[str, Any]]:
        """Parameter schema by name: :meth:`Space.to_dict` entries plus ``unit``."""
        ...

    @property
    def measurements(self) -> Mapping[str, Mapping[str, Any]]:
        """Measured quantities by name, each ``{"unit": ...}``."""
        ...

    def space(self) -> Space:
        """The parameter space, to validate points and to plan over."""
        ...

    def mean(self, params: Params) -> dict[str, float]:
        """The noise-free model value of every measurement at ``params``."""
        ...

    def evaluate(
        self, params: Params, rng: np.random.Generator, noise: float = 1.0
    ) -> dict[str, float]:
        """One noisy measurement of every quantity at ``params``.

        Args:
            params: A point of :meth:`space`.
            rng: Source of the measurement noise.
            noise: Scale on the instrument's noise (0 gives :meth:`mean`).
        """
        ...


class AnalyticEmulator(ABC):
    """Shared machinery of the built-in emulators: schemas, validation and noise.

    Subclasses set :attr:`name`, :attr:`description`, :attr:`units` (one per parameter),
    :attr:`measurement_units`, build :attr:`_space`, and implement :meth:`_model` (noise-free
    values) and :meth:`_noise_sd` (standard deviation of each measurement).
    """

    name: str
    description: str
    units: Mapping[str, str]
    measurement_units: Mapping[str, str]
    bounds: Mapping[str, tuple[float, float]]
    """Physical range of each measurement; noisy values are clipped into it."""

    def __init__(self, params: Mapping[str, Parameter]) -> None:
        self._space = Space(params)

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        """Parameter schema by name: :meth:`Space.to_dict` entries plus ``unit``."""
        return {
            name: {**spec, "unit": self.units[name]} for name, spec in self._space.to_dict().items()
        }

    @property
    def measurements(self) -> dict[str, dict[str, Any]]:
        """Measured quantities by name, each ``{"unit": ...}``."""
        return {name: {"unit": unit} for name, unit in self.measurement_units.items()}

    def space(self) -> Space:
        """The parameter space."""
        return self._space

    def mean(self, params: Params) -> dict[str, float]:
        """The noise-free model value of every measurement at ``params``.

        Raises:
            InvalidInput: ``params`` is not a point of :meth:`space`.
        """
        return self._model(self._space.validate(params))

    def evaluate(
        self, params: Params, rng: np.random.Generator, noise: float = 1.0
    ) -> dict[str, float]:
        """One noisy measurement: the model value plus Gaussian instrument noise.

        Args:
            params: A point of :meth:`space`.
            rng: Source of the measurement noise.
            noise: Scale on the instrument's noise (0 gives :meth:`mean`).

        Raises:
            InvalidInput: ``params`` is not a point of :meth:`space`.
        """
        values = self.mean(params)
        if noise == 0:
            return values
        sd = self._noise_sd(values)
        noisy: dict[str, float] = {}
        for key, value in values.items():
            low, high = self.bounds[key]
            drawn = value + noise * sd[key] * float(rng.standard_normal())
            noisy[key] = min(max(drawn, low), high)
        return noisy

    @abstractmethod
    def _model(self, point: Mapping[str, ParamValue]) -> dict[str, float]:
        """Noise-free measurement values at a validated point."""

    @abstractmethod
    def _noise_sd(self, values: Mapping[str, float]) -> dict[str, float]:
        """Standard deviation of each measurement's noise, in its own unit."""


@dataclass(frozen=True)
class _Solvent:
    """Casteel-Amis and VTF parameters of LiPF6 in one solvent blend.

    Attributes:
        kappa_max_25: Maximum conductivity over molality at 25 °C, mS/cm.
        molality_max_25: Molality of that maximum at 25 °C, mol/kg.
        molality_slope: Shift of the maximum's molality with temperature, mol/(kg K).
        a: Casteel-Amis exponent (dimensionless).
        b: Casteel-Amis curvature, (kg/mol)^2.
        vtf_b: VTF pseudo-activation temperature B, K.
        vtf_t0: VTF ideal glass-transition temperature T0, K.
    """

    kappa_max_25: float
    molality_max_25: float
    molality_slope: float
    a: float
    b: float
    vtf_b: float
    vtf_t0: float


class ElectrolyteConductivity(AnalyticEmulator):
    """Ionic conductivity of LiPF6 in carbonate solvents versus salt, temperature, solvent.

    Conductivity over molality follows the Casteel-Amis equation

        kappa(m) = kappa_max * (m / mu)^a * exp(b (m - mu)^2 - (a / mu) (m - mu)),

    which rises with the number of charge carriers at low molality and falls at high
    molality as viscosity and ion pairing grow, peaking at ``mu``. The peak height follows a
    Vogel-Tammann-Fulcher law, kappa_max(T) proportional to exp(-B / (T - T0)), and the peak
    molality shifts up with temperature (by about 0.006-0.008 mol/kg per K), as measured for
    LiPF6 in EC:EMC. Solvent blends differ in peak height and position: EC-DMC (1:1 by
    weight) reaches ~11 mS/cm near 1 mol/kg at 25 °C, EC-EMC (3:7) ~9.6 mS/cm near
    1.1 mol/kg, PC ~6 mS/cm near 0.8 mol/kg with a steeper temperature dependence.
    The best point in the space (EC-DMC at 60 °C, ~1.3 mol/kg) is interior in molality.

    Noise: 1.5 % of the value plus 0.03 mS/cm (standard deviations), as for a
    four-electrode conductivity cell with a calibrated cell constant.

    Sources:
        J. F. Casteel, E. S. Amis, J. Chem. Eng. Data 17, 55-59 (1972).
        M. S. Ding, K. Xu, S. S. Zhang, K. Amine, G. L. Henriksen, T. R. Jow,
        J. Electrochem. Soc. 148, A1196-A1204 (2001).
        J. Landesfeind, H. A. Gasteiger, J. Electrochem. Soc. 166, A3079-A3097 (2019).
    """

    name = "electrolyte"
    description = (
        "Ionic conductivity of LiPF6 electrolytes in EC-DMC, EC-EMC or PC at 10-60 °C "
        "(Casteel-Amis over molality, VTF over temperature; after Ding et al. 2001 and "
        "Landesfeind & Gasteiger 2019)."
    )
    units = {"salt_molality": "mol/kg", "temperature_c": "°C", "solvent": ""}
    measurement_units = {"conductivity": "mS/cm"}
    bounds = {"conductivity": (0.0, math.inf)}

    solvents: Mapping[str, _Solvent] = {
        "EC-DMC": _Solvent(11.0, 1.00, 0.008, 0.90, -0.02, 350.0, 160.0),
        "EC-EMC": _Solvent(9.6, 1.10, 0.008, 0.95, -0.03, 370.0, 155.0),
        "PC": _Solvent(6.0, 0.80, 0.006, 0.80, 0.0, 450.0, 165.0),
    }

    def __init__(self) -> None:
        super().__init__(
            {
                "salt_molality": Real(0.1, 3.0),
                "temperature_c": Int(10, 60),
                "solvent": Choice(list(self.solvents)),
            }
        )

    def _model(self, point: Mapping[str, ParamValue]) -> dict[str, float]:
        return {
            "conductivity": _conductivity(
                float(point["salt_molality"]),
                float(point["temperature_c"]),
                self.solvents[str(point["solvent"])],
            )
        }

    def _noise_sd(self, values: Mapping[str, float]) -> dict[str, float]:
        return {"conductivity": 0.015 * values["conductivity"] + 0.03}


def _conductivity(molality: float, temperature_c: float, solvent: _Solvent) -> float:
    """Casteel-Amis conductivity with a VTF peak height, in mS/cm.

    Args:
        molality: Salt molality, mol/kg (> 0).
        temperature_c: Temperature, °C.
        solvent: The blend's fitted parameters.
    """
    t_k = temperature_c + _ZERO_CELSIUS_K
    vtf = -solvent.vtf_b / (t_k - solvent.vtf_t0) + solvent.vtf_b / (298.15 - solvent.vtf_t0)
    kappa_max = solvent.kappa_max_25 * math.exp(vtf)
    mu = solvent.molality_max_25 + solvent.molality_slope * (temperature_c - 25.0)
    excess = molality - mu
    shape = math.pow(molality / mu, solvent.a) * math.exp(
        solvent.b * excess**2 - solvent.a / mu * excess
    )
    return kappa_max * shape


@dataclass(frozen=True)
class _Catalyst:
    """Kinetic parameters of one Pd catalyst at the reference temperature (80 °C).

    Attributes:
        k_ref: Coupling rate constant at the optimal base amount, 1/min.
        ea: Activation energy of the coupling, kJ/mol.
        k_dehalogenation_ref: Protodehalogenation rate constant of the aryl halide, 1/min.
        base_optimum: Base equivalents at which the coupling is fastest.
    """

    k_ref: float
    ea: float
    k_dehalogenation_ref: float
    base_optimum: float


class SuzukiCouplingYield(AnalyticEmulator):
    """Yield of a Pd-catalysed Suzuki-Miyaura coupling of an aryl bromide (limiting reagent).

    First-order kinetics in the aryl bromide A, with two side reactions::

        A --k1--> P (biaryl)      A --k3--> Ar-H (protodehalogenation)      P --k2--> D

    so the yield at time t is ``k1 / (k2 - ka) * (exp(-ka t) - exp(-k2 t))`` with
    ``ka = k1 + k3``. Each constant is Arrhenius in temperature around 80 °C:

    - k1 depends on the catalyst: bulky biaryl-phosphine precatalysts (XPhos Pd G3,
      Pd(OAc)2/SPhos) are fast with low activation energies (52-58 kJ/mol), Pd(PPh3)4 and
      Pd(dppf)Cl2 slower with higher ones (70-80 kJ/mol). Its dependence on the base
      (``equivalents`` of K3PO4 per aryl bromide) rises and then falls,
      ``f(e) = e / (K_b + e + e^2 / K_i)``: hydroxide/phosphate promotes transmetalation
      but excess base ties the boronic acid up as an unreactive anionic borate (Amatore,
      Jutand, Le Duc). The best amount of base differs by catalyst.
    - k3, protodehalogenation of the aryl bromide (Ea 125 kJ/mol), is the side reaction
      that takes over at high temperature.
    - k2, slow degradation of the product (Ea 45 kJ/mol), makes the best time finite.

    The optimum (XPhos Pd G3 near 63 °C, 80 min, 1.6 equivalents, ~91 %) is interior in
    every continuous parameter; each catalyst has its own optimum.

    Noise: 1 percentage point plus 2 % of the yield (standard deviations), as for an HPLC
    assay against an internal standard; yields are clipped to [0, 100].

    Sources:
        N. Miyaura, A. Suzuki, Chem. Rev. 95, 2457-2483 (1995).
        C. Amatore, A. Jutand, G. Le Duc, Chem. Eur. J. 17, 2492-2503 (2011).
        B. J. Reizman, Y.-M. Wang, S. L. Buchwald, K. F. Jensen,
        React. Chem. Eng. 1, 658-666 (2016).
    """

    name = "reaction-yield"
    description = (
        "Yield of a Pd-catalysed Suzuki-Miyaura coupling versus temperature, time, base "
        "equivalents and catalyst (first-order kinetics with protodehalogenation and product "
        "degradation; after Reizman et al. 2016)."
    )
    units = {"temperature_c": "°C", "time_min": "min", "equivalents": "equiv", "catalyst": ""}
    measurement_units = {"yield": "%"}
    bounds = {"yield": (0.0, 100.0)}

    catalysts: Mapping[str, _Catalyst] = {
        "Pd(PPh3)4": _Catalyst(0.035, 80.0, 0.0015, 2.6),
        "Pd(dppf)Cl2": _Catalyst(0.060, 70.0, 0.0010, 2.2),
        "XPhos Pd G3": _Catalyst(0.120, 52.0, 0.0030, 1.6),
        "Pd(OAc)2/SPhos": _Catalyst(0.090, 58.0, 0.0015, 1.9),
    }
    reference_k = _ZERO_CELSIUS_K + 80.0
    """Reference temperature of the rate constants, K."""
    ea_dehalogenation = 125.0
    """Activation energy of protodehalogenation, kJ/mol."""
    k_degradation_ref = 0.0025
    """Product degradation rate constant at the reference temperature, 1/min."""
    ea_degradation = 45.0
    """Activation energy of product degradation, kJ/mol."""
    base_binding = 1.0
    """K_b of the base dependence, equivalents."""

    def __init__(self) -> None:
        super().__init__(
            {
                "temperature_c": Real(40.0, 120.0),
                "time_min": Real(5.0, 240.0),
                "equivalents": Real(1.0, 4.0),
                "catalyst": Choice(list(self.catalysts)),
            }
        )

    def _model(self, point: Mapping[str, ParamValue]) -> dict[str, float]:
        catalyst = self.catalysts[str(point["catalyst"])]
        t_k = float(point["temperature_c"]) + _ZERO_CELSIUS_K
        k1 = self._arrhenius(catalyst.k_ref, catalyst.ea, t_k)
        k1 *= self._base_factor(float(point["equivalents"]), catalyst.base_optimum)
        k3 = self._arrhenius(catalyst.k_dehalogenation_ref, self.ea_dehalogenation, t_k)
        k2 = self._arrhenius(self.k_degradation_ref, self.ea_degradation, t_k)
        fraction = _intermediate_fraction(k1, k1 + k3, k2, float(point["time_min"]))
        return {"yield": 100.0 * fraction}

    def _noise_sd(self, values: Mapping[str, float]) -> dict[str, float]:
        return {"yield": 1.0 + 0.02 * values["yield"]}

    def _arrhenius(self, k_ref: float, ea: float, t_k: float) -> float:
        return k_ref * math.exp(-ea / _GAS_CONSTANT_KJ * (1.0 / t_k - 1.0 / self.reference_k))

    def _base_factor(self, equivalents: float, optimum: float) -> float:
        """Relative coupling rate, 1 at ``optimum`` equivalents of base."""
        k_b = self.base_binding
        k_i = optimum**2 / k_b
        return equivalents / (k_b + equivalents + equivalents**2 / k_i) * (1 + 2 * k_b / optimum)


def _intermediate_fraction(k_in: float, k_out_a: float, k_out_p: float, t: float) -> float:
    """Fraction of A present as P at time ``t`` for A -> P (k_in), A lost at k_out_a, P -> D.

    Args:
        k_in: Rate constant of A -> P, 1/min.
        k_out_a: Total first-order loss of A (k_in plus side reactions), 1/min.
        k_out_p: Loss of P, 1/min.
        t: Time, min.
    """
    gap = k_out_p - k_out_a
    if abs(gap) < 1e-9 * k_out_a:
        return k_in * t * math.exp(-k_out_a * t)
    return k_in / gap * (math.exp(-k_out_a * t) - math.exp(-k_out_p * t))


EMULATORS: dict[str, Emulator] = {
    emulator.name: emulator for emulator in (ElectrolyteConductivity(), SuzukiCouplingYield())
}
"""The built-in emulators by name."""


def get_emulator(name: str) -> Emulator:
    """The built-in emulator called ``name``.

    Raises:
        InvalidInput: No emulator has that name (field ``runner.station``).
    """
    try:
        return EMULATORS[name]
    except KeyError:
        raise InvalidInput(
            "runner.station",
            f"unknown station '{name}'",
            f"use one of: {', '.join(sorted(EMULATORS))} (see `genesis station list`)",
        ) from None
