"""Two organizations share a gated dataset under a data-use agreement, until it expires.

Argonne owns a dataset and makes it ``gated``: only an agreement can open it to others.
ACME's Bob cannot read it; the two organizations sign a data-use agreement that covers it
for research; Bob reads it; the agreement expires and Bob is refused again. The audit log
shows every one of those decisions, allow and deny, with the policy that decided.

    GENESIS_HOME=$(mktemp -d) python examples/two_organizations.py
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from genesis_platform import AccessDenied, Platform
from genesis_platform.governance import Principal

AGREEMENT_SECONDS = 4


def try_read(p: Platform) -> None:
    """Bob tries to read the dataset, and says what happened."""
    try:
        version = p.datasets.get("beamline-spectra")
        print(f"  {p.principal} reads {version.name}@{version.version}: allowed")
    except AccessDenied as denied:
        print(f"  {p.principal} is refused: {denied}")


def main() -> None:
    """Set up the two organizations, then gate, grant, expire and audit."""
    with Platform.open() as operator:  # the platform's operator: owner of org `local`
        operator.orgs.create("argonne", display_name="Argonne National Laboratory")
        operator.orgs.create("acme", display_name="ACME Batteries")
        operator.orgs.add_member("argonne", "ada", role="admin", vetting="vetted")
        operator.orgs.add_member("acme", "bob", role="admin", vetting="vetted")

    ada = Platform.open(principal=Principal("ada", "argonne"))
    bob = Platform.open(principal=Principal("bob", "acme"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "spectra.csv"
        data.write_text("energy_ev,intensity\n8000,0.12\n8010,0.31\n")
        ada.datasets.add("beamline-spectra", [data], description="XANES spectra")
    ada.assets.set("dataset", "beamline-spectra", access="gated")
    print("1. Argonne's dataset is gated; no agreement yet")
    try_read(bob)

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=AGREEMENT_SECONDS)
    ada.agreements.create(
        "argonne-acme-spectra",
        "data-use",
        ["argonne", "acme"],
        covers=["dataset:beamline-spectra"],
        terms={"permitted_uses": ["research"]},
        expires=expires,
    )
    ada.agreements.sign("argonne-acme-spectra")
    bob.agreements.sign("argonne-acme-spectra")
    state = bob.agreements.get("argonne-acme-spectra").effective_state
    print(f"2. both signed a data-use agreement for research: it is {state}")
    try_read(bob)

    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    state = bob.agreements.get("argonne-acme-spectra").effective_state
    print(f"3. the agreement is {state}")
    try_read(bob)
    bob.close()
    ada.close()

    with Platform.open() as operator:
        print("4. the audit trail of Bob's reads of the dataset")
        records = operator.audit.list(who="bob@acme", resource="dataset:beamline-spectra")
        for r in reversed(records):
            print(
                f"  {r.at:%H:%M:%S} {r.principal} {r.action} {r.resource}: {r.decision} "
                f"({', '.join(r.policies)})"
            )
        print(f"   chain intact: {operator.audit.verify().ok}")


if __name__ == "__main__":
    main()
